"""RecBole's prefix rows made with array operations: the same rows and lists as RecBole's loop."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recbole.data.dataset import SequentialDataset

from recbole_rimirec.config import Config
from recbole_rimirec.data.prefix_rows import (
    LIST_START,
    FastPrefixRows,
    gather_windows,
    prefix_index,
    sequences_from_starts,
    with_fast_prefix_rows,
)
from recbole_rimirec.data.sequences import sequences_from_prefix_rows
from recbole_rimirec.data.tree_dataset import TreeDataset
from recbole_rimirec.errors import ConfigError


def splits_equal(theirs, ours) -> None:
    """RecBole's and our ``build()`` give the same splits, field for field, with the same fields."""
    for a, b in zip(theirs.build(), ours.build(), strict=True):
        assert set(b.inter_feat.columns) == set(a.inter_feat.columns) and len(a) == len(b) > 0
        for field in b.inter_feat.columns:
            x, y = a.inter_feat[field], b.inter_feat[field]
            assert x.dtype == y.dtype and torch.equal(x, y), field


def loop_reference(uid, max_len):
    """RecBole's own walk over the interactions, written out."""
    target, start, length, last, seq_start = [], [], [], None, 0
    for i, u in enumerate(uid):
        if u != last:
            last, seq_start = u, i
            continue
        if i - seq_start > max_len:
            seq_start += 1
        target.append(i), start.append(seq_start), length.append(i - seq_start)
    return target, start, length


@given(sizes=st.lists(st.integers(1, 12), min_size=0, max_size=8), max_len=st.integers(1, 6))
@settings(max_examples=100)
def test_prefix_index_is_recboles_walk(sizes, max_len):
    uid = np.repeat(np.arange(len(sizes)) * 3 + 1, sizes)  # users contiguous, in any id order
    found = prefix_index(uid, max_len)
    assert [x.tolist() for x in found] == [list(x) for x in loop_reference(uid.tolist(), max_len)]


def test_gather_windows_pads_on_the_right_and_keeps_trailing_dims():
    values = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])  # [N, 2]
    out = gather_windows(values, np.array([0, 1, 3]), np.array([1, 2, 0]), 3)
    assert out.shape == (3, 3, 2) and out.dtype == values.dtype
    assert out[:, :, 0].tolist() == [[1, 0, 0], [2, 3, 0], [0, 0, 0]]


@pytest.mark.parametrize("max_len", [3, 50])
def test_fast_rows_equal_recboles_field_for_field(tiny, max_len):
    config = Config(
        "SASRec", "tiny", config_dict={**tiny, "MAX_ITEM_LIST_LENGTH": max_len, "list_fields": ["timestamp"]}
    )
    splits_equal(SequentialDataset(config), FastPrefixRows(config))  # every split, with its lists


@given(
    sizes=st.lists(st.integers(1, 12), min_size=0, max_size=8),
    held_out=st.integers(0, 2),
    max_len=st.integers(1, 6),
    seed=st.integers(0, 100),
)
@settings(max_examples=100, deadline=None)
def test_sequences_from_starts_are_the_lists_sequences(sizes, held_out, max_len, seed):
    rng = np.random.default_rng(seed)
    uid = np.repeat(np.arange(len(sizes)) * 3 + 1, sizes)  # sorted by user, then time
    items = rng.integers(1, 20, len(uid))
    target, start, length = prefix_index(uid, max_len)
    rows = uid[target]  # [R] each prefix row's user
    last = np.r_[rows[1:] != rows[:-1], True]  # [R] a user's last row
    from_end = np.zeros(len(rows), dtype=int)  # [R] the user's rows after this one
    for k in range(len(rows) - 2, -1, -1):
        from_end[k] = 0 if last[k] else from_end[k + 1] + 1
    # a train split: each user's rows but the last held_out (leave-one-out's cut), users interleaved
    keep = np.flatnonzero(from_end >= held_out)
    keep = keep[np.argsort(target[keep] - np.searchsorted(uid, rows[keep]) + rng.random(len(keep)), kind="stable")]
    hist = gather_windows(torch.from_numpy(items), start[keep], length[keep], max_len).numpy()
    expected = sequences_from_prefix_rows(rows[keep], hist, length[keep], items[target[keep]])
    found = sequences_from_starts(rows[keep], start[keep], length[keep], items)
    assert all(np.array_equal(a, b) for a, b in zip(found, expected, strict=True))


def test_sequences_from_starts_refuse_rows_that_skip_an_interaction():
    uid, items = np.array([1, 1, 1, 1]), np.array([5, 6, 7, 8])
    target, start, length = prefix_index(uid, 10)  # rows predicting 6, 7, 8
    skip = np.array([0, 2])  # the row predicting 7 left out
    assert sequences_from_starts(uid[target][skip], start[skip], length[skip], items) is None
    users, flat, offsets = sequences_from_starts(uid[target], start, length, items)
    assert users.tolist() == [1] and flat.tolist() == [5, 6, 7, 8] and offsets.tolist() == [0, 4]


def test_runs_use_the_fast_rows_whatever_their_class(tiny):
    from recbole_rimirec.data.preparation import create_dataset

    for model in ("SASRecAllPos", "RimiRec"):  # what a run builds: RecBole's SequentialDataset, the tree hook
        dataset = create_dataset(Config(model, "tiny", config_dict=tiny))
        assert isinstance(dataset, FastPrefixRows) and "timestamp_list" not in dataset.inter_feat
    assert isinstance(dataset, TreeDataset)
    assert with_fast_prefix_rows(SequentialDataset) is FastPrefixRows
    tree = with_fast_prefix_rows(TreeDataset)
    assert issubclass(tree, TreeDataset) and issubclass(tree, FastPrefixRows) and tree.__name__ == "TreeDataset"
    assert tree.data_augmentation is FastPrefixRows.data_augmentation
    from recbole.data.dataset import Dataset

    assert with_fast_prefix_rows(Dataset) is Dataset  # general models keep RecBole's


def test_fast_rows_equal_recboles_on_ml_100k_with_a_numerical_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    columns = {"inter": ["user_id", "item_id", "rating", "timestamp"]}
    config = Config(
        "SASRec",
        "ml-100k",
        config_dict={
            "state": "WARNING",
            "load_col": columns,
            "numerical_features": ["rating"],
            "list_fields": ["rating", "timestamp"],
        },
    )
    splits = FastPrefixRows(config).build()
    assert splits[0].inter_feat["rating_list"].shape[-1] == 2  # RecBole's (value, 1) pairs
    splits_equal(SequentialDataset(config), FastPrefixRows(config))


def test_by_default_only_the_item_ids_get_a_history_list(tiny):
    config = Config("SASRec", "tiny", config_dict=tiny)
    theirs, ours = SequentialDataset(config), FastPrefixRows(config)
    (a, *_), (b, *_) = theirs.build(), ours.build()
    assert set(a.inter_feat.columns) - set(b.inter_feat.columns) == {"timestamp_list"}
    assert "timestamp_list" not in ours.field2type and "timestamp_list" not in ours.field2seqlen
    assert torch.equal(a.inter_feat["item_id_list"], b.inter_feat["item_id_list"])
    with pytest.raises(ConfigError, match="list_fields: 'rating' is not an interaction field of this data set"):
        FastPrefixRows(
            Config("SASRecAllPos", "tiny", config_dict={**tiny, "list_fields": ["rating"]})
        )._change_feat_format()


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_only_the_splits_hold_history_lists(tiny, model):
    from recbole_rimirec.data.loaders import train_sequences
    from recbole_rimirec.data.preparation import create_dataset, data_preparation

    config = Config(model, "tiny", config_dict=tiny)
    dataset = create_dataset(config)
    reference = SequentialDataset(config).build()[0]  # RecBole's train split
    train, valid, test = data_preparation(config, dataset)
    assert "item_id_list" not in dataset.inter_feat and dataset.uid_field in dataset.inter_feat
    assert "item_id_list" in valid._dataset.inter_feat and "item_id_list" in test._dataset.inter_feat
    kept = train._dataset.train_sequences  # the loader keeps the sequences, not the split's rows
    for a, b in zip(kept, train_sequences(reference), strict=True):
        assert np.array_equal(a, b)
    split = create_dataset(config).build()[0]  # read only as sequences: the train split gathers no lists
    assert "item_id_list" not in split.inter_feat and LIST_START in split.inter_feat
    assert all(np.array_equal(a, b) for a, b in zip(split.train_sequences, kept, strict=True))


def test_a_train_split_read_as_rows_keeps_its_lists(tiny):
    from recbole_rimirec.data.loaders import train_sequences

    config = Config("SASRec", "tiny", config_dict=tiny)  # train_mode prefixes: RecBole's loader reads the rows
    reference = SequentialDataset(config).build()[0]
    split = FastPrefixRows(config).build()[0]
    assert LIST_START not in split.inter_feat and torch.equal(
        split.inter_feat["item_id_list"], reference.inter_feat["item_id_list"]
    )
    assert all(np.array_equal(a, b) for a, b in zip(train_sequences(split), train_sequences(reference), strict=True))
