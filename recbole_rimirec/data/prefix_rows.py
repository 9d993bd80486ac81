"""RecBole's prefix rows, built with array operations instead of a Python loop over interactions.

RecBole's ``SequentialDataset.data_augmentation`` turns each user's time-ordered interactions into
one row per interaction after the first: (user, the up to ``MAX_ITEM_LIST_LENGTH`` items before
it, the interaction). It walks the interactions in Python and keeps a ``slice`` per row, then
fills every ``<field>_list`` row by row: about 27 s per million interactions here, and the
slices alone take more memory than the lists. :func:`prefix_index` finds the same rows with
array operations and :func:`gather_windows` fills the lists a chunk of rows at a time; the splits
``build()`` returns are RecBole's, field for field (tested against it), except that only the item ids (and the fields
named in ``list_fields``) get a history list: nothing here reads the others, and at 10M
interactions each takes 2-4 GB.

Memory at scale: the data set itself holds no lists, only where each row's history starts
(``_list_start``); each split ``build()`` makes gathers its own lists from the interactions. RecBole's
lists exist once per split instead of also once for the whole data set, which at 10M interactions kept
4 GB alive beside the train split's copy of them. A train split read only as each user's sequence
(``train_mode`` all_positions or random_cut) gets no lists at all: :func:`sequences_from_starts` gives
its sequences from the row starts (another 3.7 GB at 10M interactions).
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_rimirec.errors import ConfigError

CHUNK_ROWS = 1 << 18  # rows filled at a time: bounds the index arrays' memory (about 0.4 GB at 50 items)
LIST_START = "_list_start"  # the whole data set's rows: where each row's history starts, by interaction
SEQUENCE_TRAIN_MODES = ("all_positions", "random_cut")  # train loaders that read each user's sequence, not rows


def prefix_index(uid: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prefix rows of interactions sorted by user, then time.

    Args:
        uid: [N] user of each interaction, each user's interactions contiguous and in time order.
        max_len: the longest history a row keeps (``MAX_ITEM_LIST_LENGTH``).

    Returns:
        (target, start, length): [R] each row's interaction index, the index its history starts
        at, and the history's length; one row per interaction but each user's first, in order.
    """
    uid = np.asarray(uid)
    n = len(uid)
    first = np.r_[True, uid[1:] != uid[:-1]] if n else np.zeros(0, dtype=bool)  # [N] a user's first interaction
    user_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # [N] index of the user's first
    target = np.flatnonzero(~first)  # [R]
    length = np.minimum(target - user_start[target], max_len)  # [R]
    return target, target - length, length


def gather_windows(values: torch.Tensor, start: np.ndarray, length: np.ndarray, width: int) -> torch.Tensor:
    """Each row's ``values[start : start + length]``, left-aligned and zero-padded to ``width``.

    Args:
        values: [N, ...] a field's values by interaction.
        start: [R] first index of each row's window.
        length: [R] its length, at most ``width``.
        width: the list length.

    Returns:
        torch.Tensor: [R, width, ...] of ``values``' dtype.
    """
    out = torch.zeros((len(start), width) + tuple(values.shape[1:]), dtype=values.dtype)
    offsets = np.arange(width)
    for lo in range(0, len(start), CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, len(start))
        inside = offsets[None, :] < length[lo:hi, None]  # [r, width]
        index = np.where(inside, start[lo:hi, None] + offsets[None, :], 0)  # [r, width]
        window = values[torch.from_numpy(index)]  # [r, width, ...]
        mask = torch.from_numpy(inside).reshape(inside.shape + (1,) * (values.dim() - 1))
        out[lo:hi] = window * mask.to(window.dtype) if window.dtype != torch.bool else window & mask
    return out


def sequences_from_starts(
    uid: np.ndarray, start: np.ndarray, length: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each user's sequence from prefix rows given as history starts, without their history lists.

    A row's history is ``items[start : start + length]`` and its target ``items[start + length]``
    (the interactions sorted by user, then time), so a user whose rows predict consecutive
    interactions has the sequence ``items[first row's start : last row's target + 1]``: the first
    row's history followed by every row's target, as :func:`~recbole_rimirec.data.sequences.sequences_from_prefix_rows`
    rebuilds it from the lists.

    Args:
        uid: [R] user of each row; a user's rows in time order (not necessarily contiguous).
        start: [R] index of each row's first history item in ``items``.
        length: [R] the history's length.
        items: [N] item id of every interaction, sorted by user, then time.

    Returns:
        (users, flat, offsets) as ``sequences_from_prefix_rows`` returns them, or None when some user's
        rows skip an interaction (then only the lists can say what the sequence is).
    """
    uid, start, length = np.asarray(uid), np.asarray(start), np.asarray(length)
    if len(uid) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    order = np.argsort(uid, kind="stable")
    uid, start, target = uid[order], start[order], (start + length)[order]  # [R] by user, then time
    first = np.r_[True, uid[1:] != uid[:-1]]  # [R] a user's first row
    if np.any(~first[1:] & (target[1:] != target[:-1] + 1)):
        return None
    heads = np.flatnonzero(first)  # [U]
    begin = start[heads]  # [U] the first row's history start
    end = np.r_[target[heads[1:] - 1], target[-1]] + 1  # [U] one past the last row's target
    offsets = np.r_[0, np.cumsum(end - begin)].astype(np.int64)  # [U + 1]
    index = np.repeat(begin - offsets[:-1], end - begin) + np.arange(offsets[-1])  # [T] interaction of each slot
    return uid[heads], np.asarray(items)[index].astype(np.int64, copy=False), offsets


def list_fields_of(dataset) -> set[str]:
    """The interaction fields whose history lists a dataset makes: the item id's, and ``list_fields``.

    Args:
        dataset: a sequential dataset, loaded.

    Returns:
        set[str]: field names.

    Raises:
        ConfigError: for a ``list_fields`` entry that is not an interaction field.
    """
    named = dataset.config["list_fields"] or []
    if isinstance(named, str):
        named = [named]
    for field in named:
        if field not in dataset.inter_feat:
            known = ", ".join(f for f in dataset.inter_feat if f != dataset.uid_field)
            raise ConfigError(f"list_fields: '{field}' is not an interaction field of this data set ({known})")
    return {dataset.iid_field, *named}


class FastPrefixRows(SequentialDataset):
    """A ``SequentialDataset`` whose ``data_augmentation`` makes RecBole's rows with array operations.

    Only the fields of :func:`list_fields_of` get a ``<field>_list`` (RecBole makes one for every field).
    """

    def data_augmentation(self):
        self.logger.debug("data_augmentation")
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        kept = list_fields_of(self)
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        target, start, length = prefix_index(self.inter_feat[self.uid_field].numpy(), self.max_item_list_len)
        new_data = self.inter_feat[torch.from_numpy(target)]
        self._list_sources = {}  # list field -> the field's values by (sorted) interaction
        for field in self.inter_feat:
            if field == self.uid_field:
                continue
            list_field = getattr(self, f"{field}_list_field")
            if field not in kept:
                for properties in (self.field2seqlen, self.field2source, self.field2type):
                    properties.pop(list_field, None)
                continue
            self._list_sources[list_field] = self.inter_feat[field]
        new_data.update(
            Interaction(
                {
                    self.item_list_length_field: torch.from_numpy(length.astype(np.int64)),
                    LIST_START: torch.from_numpy(start.astype(np.int64)),
                }
            )
        )
        self.inter_feat = new_data

    def build(self):
        """RecBole's splits; each gathers its history lists, but a train split read only as sequences.

        Returns:
            list: the splits. Under a ``train_mode`` of :data:`SEQUENCE_TRAIN_MODES` the train split keeps
            ``_list_start`` instead of lists and carries ``train_sequences`` (users, flat, offsets).
        """
        datasets = super().build()
        sequences_only = (self.config["train_mode"] or "prefixes") in SEQUENCE_TRAIN_MODES
        for k, split in enumerate(datasets):
            feat = split.inter_feat
            if LIST_START not in feat:
                continue
            if k == 0 and sequences_only:
                if getattr(split, "train_sequences", None) is None:  # the tree hook may have set them
                    split.train_sequences = self.sequences_of(feat)
                if split.train_sequences is not None:
                    continue  # None: a user's rows skip one, so the lists are needed after all
            split.inter_feat = self.with_lists(feat)
        return datasets

    def sequences_of(self, rows: Interaction) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """:func:`sequences_from_starts` of rows that carry ``_list_start``.

        Args:
            rows: prefix rows of this data set (a split's, before :meth:`with_lists`).

        Returns:
            (users, flat, offsets), or None when a user's rows are not consecutive.
        """
        return sequences_from_starts(
            rows[self.uid_field].numpy(),
            rows[LIST_START].numpy(),
            rows[self.item_list_length_field].numpy(),
            self._list_sources[self.item_id_list_field].numpy(),
        )

    def with_lists(self, rows: Interaction) -> Interaction:
        """The rows with their history lists gathered, in place of ``_list_start``.

        Args:
            rows (Interaction): prefix rows carrying ``_list_start``.

        Returns:
            Interaction: RecBole's columns for them.
        """
        start = rows[LIST_START].numpy()
        length = rows[self.item_list_length_field].numpy()
        columns = {k: v for k, v in rows.interaction.items() if k != LIST_START}
        for list_field, values in self._list_sources.items():
            columns[list_field] = gather_windows(values, start, length, self.max_item_list_len)
        return Interaction(columns)


def with_fast_prefix_rows(dataset_class: type) -> type:
    """The dataset class with :class:`FastPrefixRows`'s ``data_augmentation`` (sequential classes only).

    Args:
        dataset_class: the class a run would use.

    Returns:
        type: ``dataset_class`` itself when it is not sequential, else a subclass of the same name.
    """
    if not issubclass(dataset_class, SequentialDataset) or issubclass(dataset_class, FastPrefixRows):
        return dataset_class
    if dataset_class is SequentialDataset:
        return FastPrefixRows
    return type(dataset_class.__name__, (FastPrefixRows, dataset_class), {})
