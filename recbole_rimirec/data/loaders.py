"""Training loaders beside RecBole's prefix rows: all positions (one pass per user) and random cut.

* ``all_positions``: one row per user window (inputs, next-item targets at every position);
  a causal model takes its loss at every position of one forward pass.
* ``random_cut``: the ComiRec reference's sampler, one row per user per epoch, cut at a random
  position; its rows have the shape of RecBole's prefix rows, so any sequential model can use it.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_rimirec.data.prefix_rows import LIST_START
from recbole_rimirec.data.sequences import (
    all_position_windows,
    length_grouped_order,
    packed_rows,
    random_cuts,
    sequences_from_prefix_rows,
    split_rows,
    split_targets,
    window_bounds,
    windows_per_batch,
)
from recbole_rimirec.errors import ConfigError, check_integer


def targets_field(dataset) -> str:
    """Name of the per-position target field in all-positions rows.

    Args:
        dataset: a RecBole dataset.

    Returns:
        str: the item id field name + ``_targets`` (``item_id_targets``).
    """
    return dataset.iid_field + "_targets"


POSITION_SUFFIX = "_position"  # packed rows: each slot's position inside its own window
SEGMENT_SUFFIX = "_segment"  # packed rows: the window's 1-based rank in its row, 0 on padding
WINDOW_FIELD, COPY_FIELD = "_window", "_copy"  # split rows (all_positions_splits): the window and which of its rows


def packing_of(interaction, item_seq_field: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The per-slot positions and segments of packed rows, or ``(None, None)`` for plain rows.

    Args:
        interaction: a training batch.
        item_seq_field: the item list field (``item_id_list``).

    Returns:
        (positions, segments): [B, L] each, or ``None`` twice.
    """
    if item_seq_field + SEGMENT_SUFFIX not in interaction:
        return None, None
    return interaction[item_seq_field + POSITION_SUFFIX], interaction[item_seq_field + SEGMENT_SUFFIX]


def epoch_weighted(loss: torch.Tensor, n_targets: torch.Tensor, interaction, targets: str) -> torch.Tensor:
    """Turns a batch's mean loss over its targets into an even share of the epoch's loss.

    A mean over each batch's targets weighs a target by 1 / (targets in its batch). Random batches
    hold about the same number of targets, so that is about even; length-grouped batches do not
    (a batch of short windows holds a few targets, one of full windows many), so the loader adds a
    ``<targets>_norm`` field (the epoch's mean targets per window, on every row) and the loss becomes
    sum / (rows x mean targets per window): every target weighs the same, as in random batches.

    Args:
        loss: the batch's loss, a mean over its ``n_targets`` targets.
        n_targets: number of targets in the batch.
        interaction: the batch.
        targets: name of the per-position target field.

    Returns:
        ``loss``, rescaled when the batch carries ``<targets>_norm``.
    """
    norm = targets + "_norm"
    if norm not in interaction:
        return loss
    return loss * n_targets / interaction[norm].sum()


def train_sequences(dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's training sequence, rebuilt from a built train split.

    Args:
        dataset: the train ``SequentialDataset`` returned by ``build()``, or the copy a plugin
            loader holds (which keeps the sequences as ``train_sequences``, not the rows they came from).

    Returns:
        (users, flat, offsets) as in :func:`sequences_from_prefix_rows`.
    """
    kept = getattr(dataset, "train_sequences", None)
    if kept is not None:
        return kept
    feat = dataset.inter_feat
    if LIST_START in feat:  # a split of FastPrefixRows.build() before (or instead of) its lists
        found = dataset.sequences_of(feat)
        if found is not None:
            return found
        feat = dataset.with_lists(feat)
    return sequences_from_prefix_rows(
        feat[dataset.uid_field].numpy(),
        feat[dataset.item_id_list_field].numpy(),
        feat[dataset.item_list_length_field].numpy(),
        feat[dataset.iid_field].numpy(),
    )


def all_positions_stride(config) -> int | None:
    """The checked ``all_positions_stride``.

    Args:
        config: the run's Config.

    Returns:
        int | None: the stride, an integer in [1, ``MAX_ITEM_LIST_LENGTH``], or ``None`` (windows
        that do not overlap).

    Raises:
        ConfigError: naming the value and the allowed range.
    """
    stride, max_len = config["all_positions_stride"], config["MAX_ITEM_LIST_LENGTH"]
    if stride is None:
        return None
    check_integer("all_positions_stride", stride, 1)
    if stride > max_len:  # also RimiRec's default 5 under a shorter MAX_ITEM_LIST_LENGTH
        raise ConfigError(
            f"all_positions_stride {stride} is above MAX_ITEM_LIST_LENGTH {max_len}: set all_positions_stride to at "
            f"most {max_len}, or ~ for windows that do not overlap"
        )
    return stride


def all_positions_splits(config) -> int:
    """The checked ``all_positions_splits``.

    Args:
        config: the run's Config.

    Returns:
        int: rows per window per epoch, at least 1 (``~`` is 1).

    Raises:
        ConfigError: naming the value.
    """
    splits = config["all_positions_splits"]
    return 1 if splits is None else check_integer("all_positions_splits", splits, 1)


def all_positions_batch_targets(config) -> int | None:
    """The checked, effective ``all_positions_batch_targets``.

    A ``train_batch_size`` the user sets (config file, dict or command line) without also setting
    ``all_positions_batch_targets`` keeps its meaning, windows per batch: a model's default for the
    batch in targets does not override the user's own batch size.

    Args:
        config: the run's Config.

    Returns:
        int | None: targets per batch (at least 1), or ``None`` (``train_batch_size`` counts windows).

    Raises:
        ConfigError: naming the value.
    """
    value = config["all_positions_batch_targets"]
    if value is None:
        return None
    check_integer("all_positions_batch_targets", value, 1)
    user = getattr(config, "external_config_dict", {})
    if "train_batch_size" in user and "all_positions_batch_targets" not in user:
        return None
    return value


def trim_padding(batch: Interaction, list_fields: list[str], length_field: str) -> Interaction:
    """Cuts left-aligned list fields to the batch's longest sequence (a view; values unchanged).

    Causal and masked encoders give the same outputs at real positions without the trailing
    padding columns, so short-sequence data sets (Amazon: median 6 of 50) skip most of the work.

    Args:
        batch: rows with [B, L] list fields.
        list_fields: the fields to cut.
        length_field: [B] number of real items per row.

    Returns:
        Interaction: the same batch with [B, max(length)] list fields.
    """
    longest = max(int(batch[length_field].max()), 1) if len(batch) else 1
    for field in list_fields:
        batch.interaction[field] = batch[field][:, :longest]
    return batch


def with_rows(dataset, rows: Interaction, sequences: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """A copy of the train split holding ``rows``, and each user's training sequence as ``train_sequences``.

    The split's own prefix rows are not kept: they hold a [rows x MAX_ITEM_LIST_LENGTH] history list
    (4 GB at 10M interactions), and everything read from them later (popularity, the sequences) is in
    ``sequences``.

    Args:
        dataset: the built train split (or a copy made by this function).
        rows: the loader's own rows.
        sequences: ``(users, flat, offsets)`` of :func:`train_sequences` on ``dataset``.

    Returns:
        the copy, whose ``inter_feat`` is ``rows``.
    """
    out = dataset.copy(rows)
    out.train_sequences = sequences
    return out


class AllPositionsDataLoader(TrainDataLoader):
    """Yields one row per user window: ``item_id_list`` inputs and ``item_id_targets`` next items.

    ``all_positions_stride`` below ``MAX_ITEM_LIST_LENGTH`` makes long sequences' windows overlap,
    so every target keeps at least ``MAX_ITEM_LIST_LENGTH - stride`` items of history (see
    :func:`~recbole_rimirec.data.sequences.all_position_windows`). ``all_positions_group_by_length``
    draws batches of similar-length windows (see
    :func:`~recbole_rimirec.data.sequences.length_grouped_order`), so padding is trimmed away.
    ``all_positions_pack`` keeps random batches and places each batch's windows end to end in rows
    of ``MAX_ITEM_LIST_LENGTH`` slots (see :func:`~recbole_rimirec.data.sequences.packed_rows`),
    adding ``item_id_list_position`` and ``item_id_list_segment``; the batch's targets are the same.
    ``all_positions_batch_targets`` sets the windows per batch from the epoch's mean targets per
    window (see :func:`~recbole_rimirec.data.sequences.windows_per_batch`) in place of
    ``train_batch_size``, so a step sees about as many targets as one of RecBole's prefix-row batches.
    ``all_positions_splits`` k > 1 feeds every window as k rows per epoch, its targets dealt out
    among them at random anew each epoch (see :func:`~recbole_rimirec.data.sequences.split_targets`):
    every target still once per epoch, but a step of the same targets comes from k times as many
    windows (users), at up to k times the encoder work; batch sizes then count rows, not windows.
    ``all_positions_shift`` cuts each sequence longer than a window at a random shift anew each
    epoch (see :func:`~recbole_rimirec.data.sequences.all_position_windows`), so an item falls at
    another position of its window, after another history, from one epoch to the next, as it does
    across RecBole's prefix rows. Such a sequence gets one row more than its unshifted windows (the
    most windows a shift can give it); a row left without a window in an epoch is dropped from its
    batch.

    Args:
        config: the run's Config.
        dataset: the built train split.
        sampler: unused (all-positions models compute their own loss over the full library).
        shuffle: shuffle windows every epoch.
    """

    def __init__(self, config, dataset, sampler=None, shuffle=True):
        users, flat, offsets = train_sequences(dataset)
        max_len, stride = dataset.max_item_list_len, all_positions_stride(config)
        self._sequences, self._stride = (flat, offsets, max_len), stride or max_len
        self._group = config["all_positions_group_by_length"]
        self._pack = config["all_positions_pack"]
        self._splits = all_positions_splits(config)
        self._shift = bool(config["all_positions_shift"])
        owner = window_bounds(offsets, max_len, stride)[0]  # [W] the sequence of each window
        # window slots: each sequence's windows, plus one for a shifted sequence's extra window
        self._shiftable = np.diff(offsets) - 1 > max_len if self._shift else np.zeros(len(users), dtype=bool)
        per_sequence = np.bincount(owner, minlength=len(users)) + self._shiftable
        self._slot_start = np.r_[0, np.cumsum(per_sequence)[:-1]].astype(np.int64)
        self._n_slots = int(per_sequence.sum())
        owner = np.repeat(np.arange(len(users)), per_sequence)
        inputs, targets, lengths = self._slotted(np.zeros(len(users), dtype=np.int64))
        if self._group and not config["single_spec"]:
            raise ConfigError("all_positions_group_by_length is not supported with several processes; set it to False")
        if self._group and self._pack:
            raise ConfigError(
                "all_positions_pack (on by default for SASRecAllPos and RimiRec) and all_positions_group_by_length "
                "both cut padding; set one to False"
            )
        if self._group and self._splits > 1:
            raise ConfigError("all_positions_splits above 1 cannot be combined with all_positions_group_by_length")
        if self._group and self._shift:
            raise ConfigError(
                "all_positions_shift (on by default for SASRecAllPos) cannot be combined with "
                "all_positions_group_by_length; set one to False"
            )
        # targets per row: the windows' mean, shared among a window's rows (the same every epoch)
        self._targets_per_row = float((targets > 0).sum() / (len(targets) * self._splits)) if len(targets) else 1.0
        self._window_targets, self._part = targets, None
        self._row = row = np.repeat(np.arange(len(lengths)), self._splits)  # [W * k] the window slot of each row
        self._lengths, self._order = lengths[row], np.arange(len(row))
        by_row = (lambda a: a) if self._splits == 1 else (lambda a: a[row])  # [W * k]; k = 1: no copy
        columns = {
            dataset.uid_field: torch.from_numpy(users[owner][row]),
            dataset.item_id_list_field: torch.from_numpy(by_row(inputs)),
            dataset.item_list_length_field: torch.from_numpy(lengths[row]),
            targets_field(dataset): torch.from_numpy(by_row(targets)),
        }
        if self._splits > 1:  # which window and which of its rows: the epoch's deal picks the targets
            columns[WINDOW_FIELD] = torch.from_numpy(row)
            columns[COPY_FIELD] = torch.from_numpy(np.tile(np.arange(self._splits), len(lengths)))
        if self._group:  # see epoch_weighted
            columns[targets_field(dataset) + "_norm"] = torch.full((len(lengths),), self._targets_per_row)
        rows = Interaction(columns)
        # With grouping, __iter__ draws each epoch's batches and torch reads them in order.
        super().__init__(
            config, with_rows(dataset, rows, (users, flat, offsets)), None, shuffle=shuffle and not self._group
        )
        self.shuffle = shuffle
        self._drawn = False

    def _slotted(self, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows cut at ``shift``, each in its sequence's slots (unused slots: length 0).

        Args:
            shift: [U] each sequence's shift (0 for those that are not shiftable).

        Returns:
            (inputs, targets, lengths): [S, L], [S, L], [S] by window slot.
        """
        flat, offsets, max_len = self._sequences
        owner, inputs, targets, lengths = all_position_windows(flat, offsets, max_len, self._stride, shift)
        if len(owner) == self._n_slots:  # no shifted sequence: one slot per window, in order
            return inputs, targets, lengths
        slot = self._slot_start[owner] + np.arange(len(owner)) - np.searchsorted(owner, owner)  # [W]
        out = np.zeros((2, self._n_slots, max_len), dtype=np.int64)
        out[0][slot], out[1][slot] = inputs, targets
        length = np.zeros(self._n_slots, dtype=np.int64)
        length[slot] = lengths
        return out[0], out[1], length

    def _draw_shift(self):
        """Cuts this epoch's windows at new random shifts and puts them in the rows."""
        ds = self._dataset
        shift = torch.randint(0, self._stride, (len(self._shiftable),), generator=self.generator).numpy()
        inputs, targets, lengths = self._slotted(np.where(self._shiftable, shift, 0))
        self._window_targets = targets
        for field, value in ((ds.item_id_list_field, inputs), (targets_field(ds), targets)):
            ds.inter_feat.interaction[field] = torch.from_numpy(value[self._row])
        ds.inter_feat.interaction[ds.item_list_length_field] = torch.from_numpy(lengths[self._row])

    def _init_batch_size_and_step(self):
        batch_targets = all_positions_batch_targets(self.config)
        if batch_targets is None:
            return super()._init_batch_size_and_step()
        windows = windows_per_batch(batch_targets, self._targets_per_row)
        unit = "row" if self._splits > 1 else "window slot" if self._shift else "window"
        split = f", each window in {self._splits} rows" if self._splits > 1 else ""
        if self._shift:
            split += ", a sequence longer than a window with one slot more for its shifted cut"
        self.logger.info(
            f"all_positions_batch_targets {batch_targets}: {windows} {unit}s per batch "
            f"({self._targets_per_row:.2f} targets per {unit}{split})"
        )
        self.step = windows
        self.set_batch_size(windows)

    def __iter__(self):
        if self._group and self.shuffle:
            n_full = len(self._lengths) // self.step
            perm = torch.randperm(len(self._lengths), generator=self.generator).numpy()
            batch_perm = torch.randperm(n_full, generator=self.generator).numpy()
            self._order = length_grouped_order(self._lengths, self.step, perm, batch_perm)
        if self._shift and (self.shuffle or not self._drawn):
            self._draw_shift()
        self._drawn = True
        if self._splits > 1 and (self.shuffle or self._part is None):  # a new deal of targets every epoch
            keys = torch.rand(self._window_targets.shape, generator=self.generator, dtype=torch.float64).numpy()
            self._part = split_targets(self._window_targets, self._splits, keys)
        return super().__iter__()

    def collate_fn(self, index):
        ds = self._dataset
        batch = super().collate_fn(self._order[np.asarray(index)])
        if self._shift:  # slots without a window this epoch
            batch = batch[batch[ds.item_list_length_field] > 0]
        if self._splits > 1:
            batch = self._own_targets(batch)
        lists = [ds.item_id_list_field, targets_field(ds)]
        if self._pack:
            batch = self._packed(batch)
            lists += [ds.item_id_list_field + POSITION_SUFFIX, ds.item_id_list_field + SEGMENT_SUFFIX]
        return trim_padding(batch, lists, ds.item_list_length_field)

    def _own_targets(self, batch: Interaction) -> Interaction:
        """Split rows: each keeps its share of the window's targets and the inputs they need;
        rows left without a target (windows with fewer targets than splits) are dropped."""
        ds = self._dataset
        seq, length, targets = ds.item_id_list_field, ds.item_list_length_field, targets_field(ds)
        window, copy = batch[WINDOW_FIELD].numpy(), batch[COPY_FIELD].numpy()
        own, used = split_rows(batch[targets].numpy(), self._part[window], copy)  # [R, L], [R]
        keep = torch.from_numpy(used > 0)
        inputs = torch.where(torch.arange(own.shape[1])[None, :] < torch.from_numpy(used)[:, None], batch[seq], 0)
        columns = {
            ds.uid_field: batch[ds.uid_field][keep],
            seq: inputs[keep],
            length: torch.from_numpy(used)[keep],
            targets: torch.from_numpy(own)[keep],
        }
        return Interaction(columns)

    def _packed(self, batch: Interaction) -> Interaction:
        """The batch's windows packed into shared rows; each row's user is its first window's."""
        ds = self._dataset
        seq, targets = ds.item_id_list_field, targets_field(ds)
        inputs, target, position, segment, used, first = packed_rows(
            batch[seq].numpy(), batch[targets].numpy(), batch[ds.item_list_length_field].numpy(), ds.max_item_list_len
        )
        columns = {
            ds.uid_field: batch[ds.uid_field][torch.from_numpy(first)],
            seq: inputs,
            ds.item_list_length_field: used,
            targets: target,
            seq + POSITION_SUFFIX: position,
            seq + SEGMENT_SUFFIX: segment,
        }
        return Interaction({k: v if torch.is_tensor(v) else torch.from_numpy(v) for k, v in columns.items()})


class RandomCutDataLoader(TrainDataLoader):
    """Yields one prefix-shaped row per user per epoch, cut at a uniformly random position.

    Args:
        config: the run's Config.
        dataset: the built train split.
        sampler: RecBole's train sampler, used when the model asks RecBole for negatives.
        shuffle: shuffle users every epoch.
    """

    def __init__(self, config, dataset, sampler=None, shuffle=True):
        users, flat, offsets = train_sequences(dataset)
        keep = np.flatnonzero(np.diff(offsets) >= 2)
        self._flat, self._offsets, self._max_len = flat, offsets, dataset.max_item_list_len
        self._rng = np.random.default_rng(config["seed"])
        rows = Interaction({dataset.uid_field: torch.from_numpy(users[keep]), "_seq_row": torch.from_numpy(keep)})
        super().__init__(config, with_rows(dataset, rows, (users, flat, offsets)), sampler, shuffle=shuffle)

    def collate_fn(self, index):
        data = self._dataset[np.asarray(index)]
        ds = self._dataset
        history, length, target = random_cuts(
            self._flat, self._offsets, data["_seq_row"].numpy(), self._max_len, self._rng
        )
        batch = Interaction(
            {
                ds.uid_field: data[ds.uid_field],
                ds.item_id_list_field: torch.from_numpy(history),
                ds.item_list_length_field: torch.from_numpy(length),
                ds.iid_field: torch.from_numpy(target),
            }
        )
        batch = trim_padding(batch, [ds.item_id_list_field], ds.item_list_length_field)
        return self._neg_sampling(self.transform(ds, batch))
