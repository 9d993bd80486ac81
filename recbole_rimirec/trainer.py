"""The plugin's trainers: plain-data checkpoints, exact resume, time budget, several processes,
and the evaluation hook that scores a model through its own retrieval."""

from __future__ import annotations

import itertools
import os
import shutil
from contextlib import contextmanager
from time import perf_counter

import numpy as np
import torch
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color

from recbole_rimirec.checkpoint import load_checkpoint, loader_state, plain, rng_state, set_loader_state, set_rng_state
from recbole_rimirec.data.loaders import trim_padding
from recbole_rimirec.evaluation import ListCollector
from recbole_rimirec.optim import LazyAdam
from recbole_rimirec.retrieval.merge import dense_scores


def gather_rows(rows: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """Collects every rank's per-user rows into the single-process order, dropping padded duplicates.

    ``DistributedSampler`` gives each rank every world-size-th user and pads by repeating users;
    rows come in the order of the rank's sampler indices.

    Args:
        rows: [n_local, C] this rank's rows.
        indices: this rank's sampler indices (at least n_local of them).

    Returns:
        torch.Tensor: [n_users, C] the rows of all users, by index, on every rank.
    """
    pieces = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(pieces, (indices[: len(rows)], rows.cpu()))
    by_index = {}
    for idx, part in pieces:
        for i, row in zip(idx, part, strict=True):
            by_index.setdefault(i, row)
    return torch.stack([by_index[i] for i in sorted(by_index)])


def last_file_of(best_file: str) -> str:
    """The ``-last.pth`` file that goes with a best-checkpoint file ``<name>.pth``."""
    return best_file[: -len(".pth")] + "-last.pth"


def claim_checkpoint_file(best_file: str) -> str:
    """The first free name of ``<name>.pth``, ``<name>-2.pth``, ... claimed for this run.

    RecBole names checkpoints by model and the second the trainer was made, so two runs started
    in the same second under one ``checkpoint_dir`` would write (and test) each other's weights.
    The claim is the exclusive creation of the name's ``-last.pth`` file, which the trainer
    overwrites before the first epoch; the best-checkpoint file itself appears only once saved.

    Args:
        best_file: RecBole's ``saved_model_file`` (``<dir>/<model>-<time>.pth``).

    Returns:
        str: the claimed best-checkpoint file name.
    """
    stem = best_file[: -len(".pth")]
    for n in itertools.count(1):
        candidate = f"{stem}.pth" if n == 1 else f"{stem}-{n}.pth"
        if os.path.exists(candidate):
            continue
        try:
            os.close(os.open(last_file_of(candidate), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return candidate


@contextmanager
def autocast_dtype(device_type: str, dtype: str | None):
    """Makes ``dtype`` the autocast dtype of a device type for a block (RecBole's ``enable_amp``
    autocasts without naming one: float16 on a GPU, bfloat16 on the CPU).

    Args:
        device_type: ``cuda`` or ``cpu``.
        dtype: ``bfloat16``, ``float16``, or ``None`` to change nothing.
    """
    if dtype is None:
        yield
        return
    previous = torch.get_autocast_dtype(device_type)
    torch.set_autocast_dtype(device_type, getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_autocast_dtype(device_type, previous)


class TrainingBudgetExhausted(Exception):
    """Raised before an epoch when ``time_budget_s`` of training time is spent."""


class SafeCheckpointMixin:
    """Plain-data checkpoints, per-epoch timing, an optional time budget and per-user ranks.

    ``time_budget_s`` (config, optional): stop before the next epoch once this much training time
    has passed (:class:`TrainingBudgetExhausted`); the runner then tests the best checkpoint and
    marks the result as time-capped. The budget counts this process's training: a run resumed
    from its ``-last.pth`` gets it afresh, while its reported ``train_s`` includes the earlier time.
    """

    def __init__(self, config, model):
        distributed = not config["single_spec"]
        if distributed:  # RecBole's DDP wrapper passes CUDA device ids, which fail on CPU: build it here
            config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not distributed
        self.distributed = distributed
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            cuda = config["device"].type == "cuda"
            self.distributed_model = DistributedDataParallel(
                self.model, device_ids=[config["local_rank"]] if cuda else None
            )
            names = [self.saved_model_file]
            torch.distributed.broadcast_object_list(names, src=0)  # one file name for every rank
            self.saved_model_file = names[0]
        self._eval_indices: list[int] | None = None
        self.epoch_seconds: list[float] = []
        self.valid_curve: list[dict] = []  # per validation: epochs done, training seconds so far, score, all metrics
        self.time_budget = config["time_budget_s"]
        self._fit_start: float | None = None
        self.elapsed_before = 0.0  # training seconds of the processes this run resumed from
        self.last_ranks: torch.Tensor | None = None
        self.last_topk: torch.Tensor | None = None  # [U, K + 1] the last evaluation's rec.topk
        self._pending_loader_state: dict | None = None
        self.epochs_done = 0
        self._own_file: str | None = None  # claimed by the first fit(), or the resumed run's file
        self._copy_best_from: str | None = None  # a best checkpoint resumed from, copied into this run's own file
        evaluate_struct = self.evaluator.evaluate

        def keep_ranks(struct):
            topk = struct.get("rec.topk")  # [U, K + 1]: hit flags at ranks 1..K, then the positives' count
            if topk is not None and self.distributed:
                topk = gather_rows(topk, self._eval_indices)
                struct.set("rec.topk", topk)
            if topk is not None:
                hits = topk[:, :-1].bool()
                first = hits.float().argmax(dim=1)
                self.last_ranks = torch.where(hits.any(dim=1), first, torch.full_like(first, -1))
                self.last_topk = topk.cpu()
            result = evaluate_struct(struct)
            items = struct.get("rec.items") if self.item_category is not None else None
            if items is not None:  # ComiRec's Diversity@N of every list (diversity_field)
                from recbole_rimirec.data.protocol import diversity

                top = items.cpu().numpy()
                for k in self.config["topk"]:
                    share = diversity(top[:, :k], self.item_category).mean() if k > 1 else 0.0
                    result[f"diversity@{k}"] = round(float(share), self.config["metric_decimal_place"])
            return result

        self.evaluator.evaluate = keep_ranks
        self.item_category = None  # [n_items] category per item; set by the runner when diversity_field names one
        if config["diversity_field"]:
            setattr(self.eval_collector.register, "rec.items", True)  # the top-k ids, for Diversity@N

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer; :class:`LazyAdam` when ``sparse_item_grad`` gives the item table sparse gradients."""
        if not self.config["sparse_item_grad"]:
            return super()._build_optimizer(**kwargs)
        params = kwargs.get("params", self.model.parameters())
        lr, decay = kwargs.get("learning_rate", self.learning_rate), kwargs.get("weight_decay", self.weight_decay)
        return LazyAdam(params, lr=lr, weight_decay=decay)

    def fit(self, train_data, *args, **kwargs):
        self._claim_files()
        return super().fit(train_data, *args, **kwargs)

    def _claim_files(self) -> None:
        """Gives this run checkpoint files of its own (see :func:`claim_checkpoint_file`), once."""
        if self._own_file is not None:
            return
        if not self.distributed or self.config["local_rank"] == 0:
            self.saved_model_file = claim_checkpoint_file(self.saved_model_file)
            if self._copy_best_from is not None:  # the resumed best stays as it was; new bests go to the copy
                shutil.copyfile(self._copy_best_from, self.saved_model_file)
        if self.distributed:
            names = [self.saved_model_file]
            torch.distributed.broadcast_object_list(names, src=0)  # one file name for every rank
            self.saved_model_file = names[0]
        self._own_file = self.saved_model_file  # a second fit() continues in the same files

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self._pending_loader_state is not None:
            set_loader_state(train_data, self._pending_loader_state)
            self._pending_loader_state = None
        self._save_last(epoch_idx, train_data)  # before the budget check: a capped run resumes at this epoch
        if self._fit_start is None:
            self._fit_start = perf_counter()
        elif self.time_budget and perf_counter() - self._fit_start > self.time_budget:
            raise TrainingBudgetExhausted(f"time_budget_s={self.time_budget} spent after {epoch_idx} epochs")
        start = perf_counter()
        with autocast_dtype(self.device.type, self.config["amp_dtype"] if self.config["enable_amp"] else None):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(perf_counter() - start)
        self.epochs_done = epoch_idx + 1
        return loss

    def _valid_epoch(self, valid_data, *args, **kwargs):
        valid_score, valid_result = super()._valid_epoch(valid_data, *args, **kwargs)
        point = {"epochs": self.epochs_done, "train_s": sum(self.epoch_seconds), "valid_score": float(valid_score)}
        point["valid_result"] = {k: float(v) for k, v in (valid_result or {}).items()}  # every metric, for choosing
        self.valid_curve.append(point)
        return valid_score, valid_result

    def _trimmed(self, batched_data):
        """Cuts an evaluation batch's history to its longest sequence for models that declare
        ``trims_padding`` (their outputs at real positions do not depend on trailing padding)."""
        model = self.model
        if not getattr(model, "trims_padding", False):
            return batched_data
        interaction, *rest = batched_data
        return (trim_padding(interaction, [model.ITEM_SEQ], model.ITEM_SEQ_LEN), *rest)

    def _full_sort_batch_eval(self, batched_data):
        return super()._full_sort_batch_eval(self._trimmed(batched_data))

    def _checkpoint_state(self, epoch: int) -> dict:
        return {
            "config": plain(self.config.final_config_dict),
            "external_config": plain(self.config.external_config_dict),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        tmp = path + ".tmp"
        torch.save(self._checkpoint_state(epoch), tmp)
        os.replace(tmp, path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def load_weights(self, path: str) -> dict:
        """Loads model weights from a plugin checkpoint (``weights_only=True``).

        Args:
            path: the checkpoint file.

        Returns:
            dict: the whole checkpoint state.
        """
        checkpoint = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return checkpoint

    @property
    def last_checkpoint_file(self) -> str:
        """Where the state at the start of the current epoch is kept (``<best file>-last.pth``)."""
        return last_file_of(self.saved_model_file)

    def _save_last(self, epoch: int, train_data) -> None:
        """Saves everything needed to rerun from the start of ``epoch`` exactly (CPU)."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        state = self._checkpoint_state(epoch)
        state.update(
            {
                "kind": "last",
                "best_file": self.saved_model_file,
                "best_valid_result": plain(self.best_valid_result),
                "epoch_seconds": list(self.epoch_seconds),
                "train_s": self.elapsed_before + (perf_counter() - self._fit_start if self._fit_start else 0.0),
                "valid_curve": [dict(point) for point in self.valid_curve],
                "rng": rng_state(),
                "loader": loader_state(train_data),
            }
        )
        tmp = self.last_checkpoint_file + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.last_checkpoint_file)

    def load_best(self, model_file: str | None = None) -> None:
        """Loads the best checkpoint (or ``model_file``) once every rank can read it."""
        path = model_file or self.saved_model_file
        if self.distributed:
            torch.distributed.barrier()  # rank 0 has finished writing it
        self.load_weights(path)
        self.logger.info(f"Loading model structure and parameters from {path}")

    def resume_checkpoint(self, resume_file):
        """Resumes training from a ``-last.pth`` file (exactly) or a best checkpoint (weights and counters).

        A ``-last.pth`` run goes on writing its own files. A run resumed from a best checkpoint is a new
        run: its files are claimed in ``checkpoint_dir`` and start as a copy of that checkpoint, which
        keeps the weights it had.

        Args:
            resume_file: the checkpoint.
        """
        params = [id(p) for p in self.model.parameters()]
        checkpoint = self.load_weights(str(resume_file))
        if [id(p) for p in self.model.parameters()] != params:  # new modules (a tree rebuilt in that run)
            self.optimizer = self._build_optimizer()
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("kind") == "last":
            self.start_epoch = checkpoint["epoch"]
            self.saved_model_file = self._own_file = checkpoint["best_file"]
            self.best_valid_result = checkpoint["best_valid_result"]
            self.epoch_seconds = list(checkpoint["epoch_seconds"])
            # files from before train_s was kept: the epochs' own time (their validations are missing)
            self.elapsed_before = float(checkpoint.get("train_s", sum(self.epoch_seconds)))
            self.valid_curve = [dict(point) for point in checkpoint.get("valid_curve", [])]
            set_rng_state(checkpoint["rng"])
            self._pending_loader_state = checkpoint["loader"]
        else:
            self.start_epoch = checkpoint["epoch"] + 1
            self._copy_best_from = str(resume_file)
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_best(model_file)
        if self.distributed and eval_data:
            self._eval_indices = list(iter(eval_data.sampler))
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _map_reduce(self, result, num_sample):
        # Every rank already holds the metrics of the whole split (gather_rows): nothing to average.
        return result


class Trainer(SafeCheckpointMixin, RecBoleTrainer):
    """RecBole's Trainer with plain-data checkpoints."""


def make_safe(trainer_class: type) -> type:
    """Returns a subclass of a RecBole trainer with the plugin's safe checkpoints.

    Args:
        trainer_class: a RecBole trainer class.

    Returns:
        type: ``trainer_class`` with :class:`SafeCheckpointMixin` in front.
    """
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})


class RetrievalTrainer(Trainer):
    """The evaluation hook: the model's own retrieval instead of RecBole's full ranking.

    For models with ``build_index()`` and ``retrieve(interaction, k) -> (scores, ids, selected)``
    (RimiRec: per-category search; the multi-interest baselines: per-interest search). Every
    ``evaluate`` call (validation each epoch, and test) first settles the weights (the best
    checkpoint, loaded with ``weights_only=True``, when asked), then rebuilds the index from them,
    then runs RecBole's own evaluation, whose ``_full_sort_batch_eval`` this class replaces with
    retrieve -> dense scores (unretrieved items very low, an unretrieved target ``-inf``).
    With ``retrieval: full`` it is RecBole's full ranking. With ``eval_from_lists: True`` the
    metrics come from the retrieved lists themselves (:class:`~recbole_rimirec.evaluation.ListCollector`),
    never building the dense [users x items] matrix: the same figures, for libraries too large for it.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.retrieve_k = max(config["topk"])
        self.use_retrieval = (config["retrieval"] or "full") != "full"
        self.from_lists = bool(config["eval_from_lists"]) and self.use_retrieval
        if self.from_lists:  # the metrics it cannot compute are refused with the config (check_core_keys)
            self.eval_collector = ListCollector(config)
        self._stats = {"users": 0, "nodes": 0, "items": 0, "seconds": 0.0}
        self.last_stats: dict = {}

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data:
            return None
        if load_best_model:
            self.load_best(model_file)
        if not self.use_retrieval:
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        self.model.eval()
        start = perf_counter()
        self.model.build_index()
        index_s = perf_counter() - start
        self._stats = {"users": 0, "nodes": 0, "items": 0, "seconds": 0.0}
        result = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        if self.distributed:  # sums over ranks (users repeated by the sampler's padding count twice)
            # on the trainer's device: NCCL (several GPUs) reduces GPU tensors only
            totals = torch.tensor([float(v) for v in self._stats.values()], device=self.device)
            torch.distributed.all_reduce(totals)
            self._stats = dict(zip(self._stats, totals.tolist(), strict=True))
        users = max(self._stats["users"], 1)
        self.last_stats = {
            "nodes_per_user": self._stats["nodes"] / users,
            "library_fraction": self._stats["items"] / users / (self.tot_item_num - 1),
            "retrieval_ms_per_user": 1000.0 * self._stats["seconds"] / users,
            "index_s": index_s,  # the index of the current item vectors (and sub-clusters), once per evaluation
        }
        return result

    def _full_sort_batch_eval(self, batched_data):
        if not self.use_retrieval:
            return super()._full_sort_batch_eval(batched_data)
        interaction, _, positive_u, positive_i = self._trimmed(batched_data)
        interaction = interaction.to(self.device)
        start = perf_counter()
        top_s, top_i, searched_nodes, searched_items = self.model.retrieve(interaction, self.retrieve_k)
        self._stats["seconds"] += perf_counter() - start
        self._stats["users"] += len(top_s)
        self._stats["nodes"] += int(searched_nodes.sum())
        self._stats["items"] += int(searched_items.sum())
        if self.from_lists:
            return interaction, (top_s, top_i), positive_u, positive_i
        scores = dense_scores(top_s, top_i, self.tot_item_num, positive_u.to(self.device), positive_i.to(self.device))
        return interaction, scores, positive_u, positive_i

    def extra_results(self) -> dict:
        """Retrieval statistics of the last evaluation (the test run, after ``fit``)."""
        return dict(self.last_stats)


def rebuild_due(rule, score: float, best: float, cur_step: int, stopping_step: int, epochs: int, bigger=True) -> bool:
    """Whether ``tree_rebuild`` asks for the tree's rebuild after this validation.

    Args:
        rule: ``plateau`` or a number of epochs.
        score: this validation's score.
        best: the best score before it.
        cur_step: validations without a new best before this one.
        stopping_step: RecBole's patience.
        epochs: epochs trained so far.
        bigger: whether a bigger score is better.

    Returns:
        bool: for ``plateau``, True exactly when RecBole's early stopping would stop now; for a
        number N, once N epochs are done.
    """
    if rule == "plateau":
        better = score >= best if bigger else score <= best
        return not better and cur_step + 1 > stopping_step
    return epochs >= rule


def carry_optimizer_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Gives a new optimizer the state (Adam's moments and step) of the parameters it shares with an old one.

    After a tree rebuild the encoder and item embeddings are the same tensors; a fresh Adam would
    take its first, full-size steps on them and shake a trained encoder.

    Args:
        old: the optimizer before the model's modules changed.
        new: one built over the model's parameters now.

    Returns:
        torch.optim.Optimizer: ``new``, with the shared parameters' state.
    """
    kept = {id(p) for group in new.param_groups for p in group["params"]}
    for group in old.param_groups:
        for p in group["params"]:
            if id(p) in kept and p in old.state:
                new.state[p] = old.state[p]
    return new


class RimiRecTrainer(RetrievalTrainer):
    """RimiRec's evaluation hook (per-category retrieval, see :class:`RetrievalTrainer`) and its tree rebuild.

    ``tree_rebuild`` (config): once, rebuild the item tree from the model's own item embeddings
    (``tree_rebuild_vectors``), as JTM and Deep Retrieval re-learn their structure. ``plateau``: when
    early stopping would stop, from the best checkpoint's weights; a number N: after N epochs, from
    the current weights. The rebuild happens at the start of the next epoch: the encoder and item
    embeddings are kept, the generator, node tower and code embeddings start afresh for the new
    tree (or from the old ones, ``tree_rebuild_warm``), the optimizer is rebuilt (the kept parameters
    keep their state, :func:`carry_optimizer_state`), and early stopping
    starts again: the model tested is the best on validation of the new tree's epochs, as a second
    run on that tree would be (keeping the old best to beat left the new tree a few epochs against a
    converged model: it never won on Amazon Beauty or Toys, docs/rimirec.md).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.tree_rebuild = config["tree_rebuild"]
        if self.tree_rebuild is not None and self.distributed:  # a default must not stop a multi-process run
            self.logger.warning("tree_rebuild is not supported with several processes (nproc > 1): the tree stays")
            self.tree_rebuild = None
        self._train_dataset = None
        self._rebuild_pending = False

    def fit(self, train_data, *args, **kwargs):
        self._train_dataset = train_data.dataset
        return super().fit(train_data, *args, **kwargs)

    def _valid_epoch(self, valid_data, *args, **kwargs):
        valid_score, valid_result = super()._valid_epoch(valid_data, *args, **kwargs)
        if self.tree_rebuild is None or int(self.model.tree_rebuilds) > 0 or self._rebuild_pending:
            return valid_score, valid_result
        best, bigger = self.best_valid_score, self.valid_metric_bigger
        if rebuild_due(
            self.tree_rebuild, valid_score, best, self.cur_step, self.stopping_step, self.epochs_done, bigger
        ):
            self._rebuild_pending = True
            self.cur_step = -1  # RecBole's early stopping, next, makes it 0 (or a new best does): it cannot stop now
            self.valid_curve[-1]["tree_rebuild"] = True
        return valid_score, valid_result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self._rebuild_pending:  # before the epoch's -last.pth: a resumed run starts from the new tree
            self._rebuild_pending = False
            if self.tree_rebuild == "plateau":  # the best weights, and the optimizer's state that went with them
                self.optimizer.load_state_dict(self.load_weights(self.saved_model_file)["optimizer"])
            self.model.rebuild_tree(self._train_dataset)
            self.optimizer = carry_optimizer_state(self.optimizer, self._build_optimizer())
            self.cur_step = 0
            self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf  # the new tree's own best
            self.best_valid_result = None
            self.logger.info(f"tree_rebuild: new tree after {epoch_idx} epochs; early stopping starts again")
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
