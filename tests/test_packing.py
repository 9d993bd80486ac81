"""Packed all-positions rows: the same windows, the same states and loss, less padding."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.config import Config
from recbole_rimirec.data.preparation import create_dataset, data_preparation
from recbole_rimirec.data.sequences import pack_windows, packed_rows
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.packing import packed_attention_mask


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(lambda cap: st.tuples(st.just(cap), st.lists(st.integers(1, cap), max_size=40))))
def test_every_window_is_placed_once_contiguous_and_within_its_row(case):
    capacity, lengths = case
    lengths = np.array(lengths, dtype=np.int64)
    row, start, segment, n_rows = pack_windows(lengths, capacity)
    assert n_rows <= len(lengths) and (n_rows > 0) == (len(lengths) > 0)
    assert ((start >= 0) & (start + lengths <= capacity)).all()
    for r in range(n_rows):
        mine = np.flatnonzero(row == r)
        assert len(mine) > 0
        by_start = mine[np.argsort(start[mine])]
        ends = np.cumsum(lengths[by_start])
        assert (start[by_start] == np.r_[0, ends[:-1]]).all()  # end to end from slot 0, no overlap, no gap
        assert (segment[by_start] == np.arange(1, len(mine) + 1)).all()
    # every row but the last is more than half full (its next-shortest window did not fit)
    assert n_rows <= max(1, int(np.ceil(2 * lengths.sum() / capacity))) or len(lengths) == 0


def test_a_window_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        pack_windows(np.array([2, 5]), 4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=15))
def test_packed_rows_hold_each_window_with_its_own_positions(lengths):
    lengths = np.array(lengths, dtype=np.int64)
    L = 6
    col = np.arange(L)[None, :]
    inputs = np.where(col < lengths[:, None], 100 * np.arange(1, len(lengths) + 1)[:, None] + col + 1, 0)
    targets = np.where(col < lengths[:, None], inputs + 1, 0)
    packed_in, packed_tg, positions, segments, used, first = packed_rows(inputs, targets, lengths, L)
    row, start, segment, _ = pack_windows(lengths, L)
    for w, n in enumerate(lengths):
        slots = slice(start[w], start[w] + n)
        assert (packed_in[row[w], slots] == inputs[w, :n]).all()
        assert (packed_tg[row[w], slots] == targets[w, :n]).all()
        assert (positions[row[w], slots] == np.arange(n)).all()
        assert (segments[row[w], slots] == segment[w]).all()
    assert (used == (segments > 0).sum(1)).all() and used.sum() == lengths.sum()
    assert (packed_in[segments == 0] == 0).all()
    assert (segment[first] == 1).all() and (row[first] == np.arange(len(used))).all()


def test_the_mask_keeps_attention_causal_and_inside_each_window():
    segments = torch.tensor([[1, 1, 2, 2, 2, 0]])
    allowed = packed_attention_mask(segments)[0, 0] == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0],  # padding attends nothing (its state is never used)
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def build(tiny, model="SASRecAllPos", **extra):
    config = Config(model, "tiny", config_dict={**tiny, "train_mode": "all_positions", **extra})
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_packed_batch_gives_every_target_the_same_state_and_the_same_loss(tiny, model):
    config, loader = build(
        tiny, model, MAX_ITEM_LIST_LENGTH=30, train_batch_size=16, all_positions_pack=False, shuffle=False
    )
    ds = loader._dataset
    torch.manual_seed(0)
    net = config.model_class(config, ds).eval()  # dropout off
    targets = ds.iid_field + "_targets"
    plain = loader.collate_fn(np.arange(16))  # the first 16 windows, unpacked (packing is off)
    assert "item_id_list_segment" not in plain
    packed = loader._packed(plain)
    assert len(packed) < len(plain)  # some windows share a row
    with torch.no_grad():
        state_plain = net.encode_all(plain[ds.item_id_list_field])[plain[targets] > 0]
        state_packed = net.encode_all(
            packed[ds.item_id_list_field], packed["item_id_list_position"], packed["item_id_list_segment"]
        )[packed[targets] > 0]
        # the same targets in both; order them by target id to compare states
        order_plain = torch.argsort(plain[targets][plain[targets] > 0], stable=True)
        order_packed = torch.argsort(packed[targets][packed[targets] > 0], stable=True)
        loss_plain, loss_packed = net.calculate_loss(plain), net.calculate_loss(packed)
    assert torch.equal(
        plain[targets][plain[targets] > 0][order_plain], packed[targets][packed[targets] > 0][order_packed]
    )
    assert torch.allclose(state_plain.sum(0), state_packed.sum(0), rtol=1e-4, atol=1e-4)
    assert torch.allclose(loss_plain, loss_packed, rtol=1e-5, atol=1e-6)


def test_packed_epoch_has_the_same_targets_in_fewer_slots(tiny):
    _, packed = build(tiny, MAX_ITEM_LIST_LENGTH=30, train_batch_size=16, all_positions_pack=True)
    _, plain = build(tiny, MAX_ITEM_LIST_LENGTH=30, train_batch_size=16, all_positions_pack=False)
    targets = "item_id_targets"

    def epoch(loader):
        batches = list(loader)
        seen = torch.cat([b[targets][b[targets] > 0] for b in batches]).sort().values
        return seen, sum(b["item_id_list"].numel() for b in batches), len(batches)

    seen_packed, slots_packed, n_packed = epoch(packed)
    seen_plain, slots_plain, n_plain = epoch(plain)
    assert torch.equal(seen_packed, seen_plain) and n_packed == n_plain  # same targets, same optimizer steps
    assert slots_packed < slots_plain
    batch = next(iter(packed))
    assert {"item_id_list_position", "item_id_list_segment"} <= set(batch.columns)


def test_packing_and_length_grouping_together_is_a_one_line_error(tiny):
    with pytest.raises(ConfigError, match=r"all_positions_pack \(on by default.*\) and all_positions_group_by_length"):
        build(tiny, all_positions_pack=True, all_positions_group_by_length=True)
