"""Adam for large item tables: rows with a sparse gradient are updated alone (lazily).

At a million items, a dense [n_items, H] gradient and Adam's pass over the whole table cost more
than the rest of a training step (docs/benchmarks.md, "Training at scale"). With
``sparse_item_grad: True`` the item table's lookups give a sparse gradient (the rows a batch
touched), and :class:`LazyAdam` updates only those rows and their moments; every other
parameter takes torch's Adam step unchanged. This is the "lazy Adam" of TensorFlow Addons and
torch's ``SparseAdam`` (whose step costs time in proportion to the whole table, not to the rows),
so a row's moments decay only in the steps that touch it.
"""

from __future__ import annotations

import torch

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.layers import AUTO_EXACT_MAX_ITEMS


class LazyAdam(torch.optim.Adam):
    """torch's Adam, with parameters whose gradient is sparse updated only in the rows it holds.

    Args:
        params: parameters or parameter groups, as for :class:`torch.optim.Adam`.
        **kwargs: Adam's keywords (``lr``, ``betas``, ``eps``, ``weight_decay``); ``amsgrad`` and
            ``maximize`` are not supported for sparse rows.
    """

    def __init__(self, params, **kwargs):
        if kwargs.get("amsgrad") or kwargs.get("maximize"):
            raise ConfigError("LazyAdam does not support amsgrad or maximize")
        super().__init__(params, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        """One step: lazy row updates for sparse gradients, then Adam for every dense one.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            the closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    self._sparse_step(p, group)
                    held.append((p, p.grad))
                    p.grad = None  # Adam's step skips parameters without a gradient
        super().step()
        for p, grad in held:
            p.grad = grad
        return loss

    def _sparse_step(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad.coalesce()  # duplicate rows summed
        rows, g = grad.indices()[0], grad.values()  # [U], [U, H]
        if group["weight_decay"]:
            g = g.add(p.index_select(0, rows), alpha=group["weight_decay"])
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)  # [U, H]
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)  # [U, H]
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        denom = v.div_(1 - beta2**t).sqrt_().add_(group["eps"])  # in place: v is stored already
        p.index_add_(0, rows, m.div_(denom), alpha=-group["lr"] / (1 - beta1**t))


def check_sparse_item_grad(config, model: str) -> None:
    """Checks that ``sparse_item_grad`` can be used with the run's other keys.

    A sparse item gradient needs every use of the item table in training to be a lookup: the
    sampled global softmax (``global_negatives``) and, for RimiRec, the sampled within-node
    softmax (``tower_negatives``); and an Adam learner with no gradient clipping.

    Args:
        config: the run's Config.
        model: the model's name, for the message.

    Raises:
        ConfigError: naming the key that prevents it.
    """
    if not config["sparse_item_grad"]:
        return
    needs = ["global_negatives"] if config["global_loss_weight"] != 0 or model != "RimiRec" else []
    needs += ["tower_negatives"] if model == "RimiRec" else []
    for key in needs:  # auto passes here (the library's size is not known yet) and is checked again once resolved
        if not config[key]:
            raise ConfigError(
                f"sparse_item_grad needs {key} set to a number: a full softmax touches every item"
                f" (auto is the full softmax up to {AUTO_EXACT_MAX_ITEMS:,} items)"
            )
    if model == "RimiRec" and config["generator_distill_weight"]:
        raise ConfigError("sparse_item_grad cannot be used with generator_distill_weight (it scores every item)")
    check_lazy_adam(config)


def check_lazy_adam(config) -> None:
    """Checks the optimizer keys that :class:`LazyAdam` (used with ``sparse_item_grad``) needs.

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the key that prevents it.
    """
    if str(config["learner"]).lower() != "adam":
        raise ConfigError(f"sparse_item_grad needs learner: adam, not {config['learner']}")
    if config["clip_grad_norm"]:
        raise ConfigError("sparse_item_grad cannot be used with clip_grad_norm")
