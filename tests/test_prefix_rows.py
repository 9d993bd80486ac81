"""RecBole's prefix rows made with array operations: the same rows and lists as RecBole's loop."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recbole.data.dataset import SequentialDataset

from recbole_rimirec.config import Config
from recbole_rimirec.data.prefix_rows import FastPrefixRows, gather_windows, prefix_index, with_fast_prefix_rows
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
        "SASRecAllPos", "tiny", config_dict={**tiny, "MAX_ITEM_LIST_LENGTH": max_len, "list_fields": ["timestamp"]}
    )
    splits_equal(SequentialDataset(config), FastPrefixRows(config))  # every split, with its lists


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
    config = Config("SASRecAllPos", "tiny", config_dict=tiny)
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
