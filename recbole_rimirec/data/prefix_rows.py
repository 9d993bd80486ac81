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
(``_list_start``); each split ``build()`` makes (every split goes through ``copy``) gathers its own
lists from the interactions. RecBole's lists exist once per split instead of also once for the whole
data set, which at 10M interactions kept 4 GB alive beside the train split's copy of them.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_rimirec.errors import ConfigError

CHUNK_ROWS = 1 << 18  # rows filled at a time: bounds the index arrays' memory (about 0.4 GB at 50 items)
LIST_START = "_list_start"  # the whole data set's rows: where each row's history starts, by interaction


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

    def copy(self, new_inter_feat):
        """RecBole's copy; rows that carry ``_list_start`` (the splits of ``build()``) get their history lists.

        Args:
            new_inter_feat (Interaction): the copy's rows.

        Returns:
            the copy.
        """
        if LIST_START in new_inter_feat:
            start = new_inter_feat[LIST_START].numpy()
            length = new_inter_feat[self.item_list_length_field].numpy()
            columns = {k: v for k, v in new_inter_feat.interaction.items() if k != LIST_START}
            for list_field, values in self._list_sources.items():
                columns[list_field] = gather_windows(values, start, length, self.max_item_list_len)
            new_inter_feat = Interaction(columns)
        return super().copy(new_inter_feat)


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
