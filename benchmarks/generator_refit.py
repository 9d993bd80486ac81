"""Which generator head would pick the nodes the global head would? Refit heads on a frozen encoder.

RimiRec's selected tenth loses against scoring every leaf because of the generator's pick: nodes
picked by the global head's own mass per node recover the whole ceiling (docs/rimirec.md). The
global head's log mass on a node is ``logsumexp_{i in node} h . v_i`` (minus the user's log
partition), a log-sum-exp of one linear function per item; the generator's head gives a node one
linear function ``h . e_n + b_n``. This script asks whether a head closer to that form closes the
gap, without retraining the encoder: it keeps a saved run's weights, collects the encoder's state at
every training target (eval mode), fits each head on those states for a few epochs, and scores the
validation split with the run's own selection and merge, the fitted head in the generator's place.

Heads: ``trained`` (the run's own generator, no refit), ``teacher`` (the global head's soft target
itself, a bound: it scores every item), ``proto`` (its estimate from M k-means prototypes per
leaf, optionally blended with the generator), ``linear`` (the same form, refit on
eval-mode states), ``mixture`` (``logsumexp_j h . e_{n,j} + b_{n,j}`` over ``--components``
prototypes per node), ``mlp`` (a hidden layer before the node logits). Each is fitted on the
target's leaf (``leaf``, the path NLL the model trains with) or on the global head's mass per leaf
(``mass``, a soft target: what the bound selects by; ``mass@T`` at temperature T; ``top@K``, the
leaves of its top K items).

Run: python benchmarks/generator_refit.py <checkpoint.pth> --out <file>.json [--heads linear:leaf mixture:mass ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from time import perf_counter

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rimirec_analysis import header, load, score_users, setting, summary  # noqa: E402

from recbole_rimirec.data.loaders import packing_of  # noqa: E402
from recbole_rimirec.model.generator import node_log_probs, node_mass_log_probs  # noqa: E402
from recbole_rimirec.retrieval.selection import group_logsumexp  # noqa: E402

HEADS = ["trained", "linear:leaf", "linear:mass", "mixture:leaf", "mixture:mass", "mlp:leaf"]


class LinearHead(nn.Module):
    """The generator's own form, started from the run's weights."""

    def __init__(self, generator):
        super().__init__()
        self.tree = generator.tree
        self.weight = nn.Parameter(generator.node_embedding.weight.detach().clone())  # [N, H]
        self.bias = nn.Parameter(generator.node_bias.detach().clone())  # [N]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.T + self.bias  # [P, N]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return node_log_probs(self.logits(h), self.tree)


class MixtureHead(LinearHead):
    """``logsumexp_j h . e_{n,j} + b_{n,j}``: m prototypes per node, started from the run's weights."""

    def __init__(self, generator, components: int):
        super().__init__(generator)
        N, H = self.weight.shape
        noise = 0.02 * torch.randn(components, N, H, generator=torch.Generator().manual_seed(0))
        self.weight = nn.Parameter(self.weight.detach()[None] + noise)  # [m, N, H]
        self.bias = nn.Parameter(self.bias.detach()[None].repeat(components, 1) - torch.log(torch.tensor(components)))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.einsum("ph,mnh->pmn", h, self.weight) + self.bias[None], dim=1)  # [P, N]


class MLPHead(LinearHead):
    """A residual hidden layer before the run's linear node logits."""

    def __init__(self, generator, hidden: int):
        super().__init__(generator)
        H = self.weight.shape[1]
        self.hidden = nn.Sequential(nn.Linear(H, hidden), nn.GELU(), nn.Linear(hidden, H))
        nn.init.zeros_(self.hidden[2].weight)
        nn.init.zeros_(self.hidden[2].bias)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return (h + self.hidden(h)) @ self.weight.T + self.bias


class TeacherHead(nn.Module):
    """The global head's own soft target as P(node | user): a bound (it scores every item), no fit."""

    def __init__(self, net, objective: str):
        super().__init__()
        object.__setattr__(self, "_net", net)  # not a submodule: the model holds this head
        self.objective = objective or "mass"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from recbole_rimirec.model.generator import leaf_mass_log_probs

        net = self._net
        return leaf_mass_log_probs(
            teacher_leaf_mass(h @ net.item_embedding.weight.T, net.tree, self.objective), net.tree
        )


class PrototypeHead(nn.Module):
    """The global head's log mass per leaf estimated from M k-means prototypes of each leaf's item vectors.

    ``log mass(leaf) ~ logsumexp_j h . c_j + log n_j`` over the leaf's clusters (M = 1: the centroid
    selector of ``rimirec_analysis.py``); ``blend`` > 0 multiplies in the generator's own P(leaf | user)
    with that weight (a product of the two, renormalised over the leaves). No fit; scores
    ``M x leaves`` vectors per user.
    """

    def __init__(self, net, components: int, blend: float = 0.0):
        super().__init__()
        from sklearn.cluster import KMeans

        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_generator", net.generator)  # the run's own, before this head replaces it
        tree, weight = net.tree, net.item_embedding.weight.detach()
        self.leaves = tree.is_leaf.nonzero().squeeze(1)  # [n_leaves]
        centres, log_n, owner = [], [], []
        for column, leaf in enumerate(self.leaves.tolist()):
            vectors = weight[1:][tree.leaf[1:] == leaf].numpy()  # the leaf's items
            m = min(components, len(vectors))
            km = KMeans(m, n_init=1, random_state=0).fit(vectors) if m > 1 else None
            labels = km.labels_ if km is not None else [0] * len(vectors)
            counts = torch.bincount(torch.as_tensor(labels), minlength=m).float()
            centres.append(
                torch.as_tensor(km.cluster_centers_) if km is not None else torch.as_tensor(vectors.mean(0))[None]
            )
            log_n.append(counts.clamp(min=1).log())
            owner.append(torch.full((m,), column))
        self.centres = torch.cat(centres).float()  # [C, H]
        self.log_n = torch.cat(log_n)  # [C]
        self.owner = torch.cat(owner)  # [C] column of each prototype's leaf
        self.blend = blend

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from recbole_rimirec.model.generator import leaf_mass_log_probs

        net = self._net
        logits = h @ self.centres.T + self.log_n  # [P, C]
        log_mass = group_logsumexp(logits, self.owner, len(self.leaves))  # [P, n_leaves] over each leaf's prototypes
        if self.blend:
            log_mass = (1 - self.blend) * log_mass + self.blend * self._generator(h)[:, self.leaves]
        mass = torch.zeros(len(h), net.tree.num_nodes)
        mass[:, self.leaves] = log_mass.softmax(1)
        return leaf_mass_log_probs(mass, net.tree)


@torch.no_grad()
def states(net, loader, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's state (eval mode) and the target at every target of a split.

    Args:
        net: the RimiRec model, in eval mode.
        loader: the split's loader.
        train: ``True`` for the training loader (all-positions or prefix rows), else an evaluation loader.

    Returns:
        (h, target): [P, H] and [P].
    """
    hs, targets = [], []
    for batch in loader:
        inter = batch if train else batch[0]
        if train and net.TARGETS in inter:
            target = inter[net.TARGETS]  # [B, L]
            hidden = net.encode_all(inter[net.ITEM_SEQ], *packing_of(inter, net.ITEM_SEQ))  # [B, L, H]
            keep = target > 0
            hs.append(hidden[keep])
            targets.append(target[keep])
        else:
            hs.append(net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN]))
            targets.append(inter[net.POS_ITEM_ID if train else net.ITEM_ID])
    return torch.cat(hs), torch.cat(targets)


def leaf_nll(head, h: torch.Tensor, target: torch.Tensor, tree, chunk: int = 8192) -> float:
    """Mean -log P(leaf(target) | user) under a head (a module from states to [P, N] log-probabilities)."""
    with torch.no_grad():
        total = sum(
            -head(h[i : i + chunk]).gather(1, tree.leaf[target[i : i + chunk]][:, None]).sum()
            for i in range(0, len(h), chunk)
        )
    return float(total) / len(h)


def teacher_leaf_mass(logits: torch.Tensor, tree, objective: str) -> torch.Tensor:
    """The global head's soft target per leaf.

    Args:
        logits: [P, n_items] h . v (item 0, padding, is ignored).
        tree: the tree's tensors.
        objective: ``mass`` (its softmax's mass per leaf), ``mass@T`` (the softmax at temperature T)
            or ``top@K`` (an even share for the leaf of each of its top K items).

    Returns:
        torch.Tensor: [P, N] a distribution over the leaves (0 on inner nodes).
    """
    name, _, value = objective.partition("@")
    logits = logits.clone()
    logits[:, 0] = float("-inf")
    if name == "top":
        top = logits.topk(int(value), dim=1).indices  # [P, K]
        probs = torch.zeros_like(logits).scatter_(1, top, 1.0 / int(value))
    else:
        probs = (logits / float(value or 1.0)).softmax(1)
    mass = torch.zeros(len(logits), tree.num_nodes, dtype=logits.dtype).index_add_(1, tree.leaf[1:], probs[:, 1:])
    return mass  # only leaves receive mass: each item's leaf


def fit(head, h, target, net, objective: str, epochs: int, lr: float, batch: int, seed: int) -> list[float]:
    """Fits a head on frozen states; returns the training loss per epoch.

    Args:
        head: the head to fit (its parameters are trained).
        h: [P, H] states; target: [P] target items.
        net: the RimiRec model (the tree, and the item vectors for ``mass``).
        objective: ``leaf`` (NLL of the target's leaf), or a soft target from the global head
            (cross-entropy against :func:`teacher_leaf_mass`: ``mass``, ``mass@T``, ``top@K``).
        epochs, lr, batch, seed: the optimisation.
    """
    tree, items = net.tree, net.item_embedding.weight.detach()
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        perm, total = torch.randperm(len(h), generator=order), 0.0
        for i in range(0, len(h), batch):
            idx = perm[i : i + batch]
            log_p = head(h[idx])  # [b, N]
            if objective == "leaf":
                loss = -log_p.gather(1, tree.leaf[target[idx]][:, None]).mean()
            else:
                with torch.no_grad():
                    mass = teacher_leaf_mass(h[idx] @ items.T, tree, objective)  # [b, N]
                loss = -(mass * log_p).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        curve.append(total / len(h))
    return curve


class _Frozen(nn.Module):
    """A fitted head in the generator's place, gradients off."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    @torch.no_grad()
    def forward(self, h):
        return self.head(h)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument(
        "--heads",
        nargs="+",
        default=HEADS,
        help="trained, teacher:<target>, proto:<M>[@<blend>], or <linear|mixture|mlp>:<target>; "
        "target: leaf, mass, mass@T, top@K",
    )
    parser.add_argument("--components", type=int, default=8, help="prototypes per node of the mixture head")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width of the MLP head")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--select_method", help="selection rule (default: the run's own)")
    parser.add_argument("--select_max_nodes", type=int, help="nodes per user (default: the run's own)")
    parser.add_argument("--retrieval_score", help="merge score (default: the run's own)")
    parser.add_argument("--global_score_weight", type=float, help="beta of the mixed score (default: the run's own)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    net, loaders, _, config = load(args.checkpoint, "all")
    overrides = {"select_method": "selection", "select_max_nodes": "max_nodes", "retrieval_score": "score"}
    for key in (*overrides, "global_score_weight"):
        if getattr(args, key) is not None:
            setattr(net, overrides.get(key, key), getattr(args, key))
    start = perf_counter()
    h_train, t_train = states(net, loaders["train"], train=True)
    h_eval, t_eval = states(net, loaders[args.split], train=False)
    print(f"states: {len(h_train)} training targets, {len(h_eval)} {args.split} users ({perf_counter() - start:.0f} s)")
    n_items = int(net.tree.size[0])
    teacher = node_mass_log_probs  # the bound's estimate, for the NLL column
    with torch.no_grad():
        mass_nll = float(
            sum(
                -teacher((h_eval[i : i + 4096] @ net.item_embedding.weight.T).softmax(1), net.tree)
                .gather(1, net.tree.leaf[t_eval[i : i + 4096]][:, None])
                .sum()
                for i in range(0, len(h_eval), 4096)
            )
            / len(h_eval)
        )
    rows = [{"head": "global head's mass (bound)", "eval_leaf_nll": mass_nll}]
    print(json.dumps(rows[0]))
    for name in args.heads:
        form, _, objective = name.partition(":")
        start = perf_counter()
        if form == "trained":
            head, curve = net.generator, []
        elif form == "teacher":
            head, curve = TeacherHead(net, objective), []
        elif form == "proto":  # proto:<M>[@<blend>]
            m, _, blend = objective.partition("@")
            head, curve = PrototypeHead(net, int(m), float(blend or 0.0)), []
        else:
            head = {
                "linear": lambda: LinearHead(net.generator),
                "mixture": lambda: MixtureHead(net.generator, args.components),
                "mlp": lambda: MLPHead(net.generator, args.hidden),
            }[form]()
            with torch.enable_grad():
                curve = fit(head, h_train, t_train, net, objective, args.epochs, args.lr, args.batch, args.seed)
        fit_s = perf_counter() - start
        frozen = head if form in ("trained", "teacher", "proto") else _Frozen(head)
        with setting(net, generator=frozen):
            found = summary(score_users(net, loaders[args.split]), n_items)
        row = {
            "head": name,
            "train_curve": curve,
            "fit_s": fit_s,
            "train_leaf_nll": leaf_nll(frozen, h_train[:50000], t_train[:50000], net.tree),
            "eval_leaf_nll": leaf_nll(frozen, h_eval, t_eval, net.tree),
            **{k: found[k] for k in ("ndcg@10", "recall@10", "recall@50", "coverage", "library_fraction")},
        }
        rows.append(row)
        print(json.dumps(row))
    with setting(net):
        whole = summary(score_users(net, loaders[args.split], global_head=True), n_items, global_head=True)
    rows.append(
        {"head": "global head over the whole library", **{k: whole[k] for k in ("ndcg@10", "recall@10", "recall@50")}}
    )
    print(json.dumps(rows[-1]))
    result = {
        **header(args.checkpoint, config, args.split),
        "settings": {k: v for k, v in vars(args).items() if k not in ("checkpoint", "out")},
        "run_setting": {
            "select_method": net.selection,
            "select_budget": net.budget,
            "max_nodes": net.max_nodes,
            "retrieval_score": net.score,
            "global_score_weight": net.global_score_weight,
        },
        "training_targets": len(h_train),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
