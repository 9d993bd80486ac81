import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.data.sequences import (
    GROUP_BATCHES,
    all_position_windows,
    length_grouped_order,
    random_cuts,
    sequences_from_prefix_rows,
    split_rows,
    split_targets,
)


def prefix_rows(seqs, max_len):
    """RecBole's rows: for each position t >= 1, the last max_len items before t and the item at t."""
    uid, hist, hist_len, target = [], [], [], []
    for u, s in enumerate(seqs):
        for t in range(1, len(s)):
            h = s[max(0, t - max_len) : t]
            uid.append(u)
            hist.append(list(h) + [0] * (max_len - len(h)))
            hist_len.append(len(h))
            target.append(s[t])
    return np.array(uid), np.array(hist).reshape(-1, max_len), np.array(hist_len), np.array(target)


seq_lists = st.lists(st.lists(st.integers(1, 50), min_size=2, max_size=30), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(seqs=seq_lists, max_len=st.integers(1, 12), seed=st.integers(0, 10))
def test_sequences_rebuilt_from_interleaved_prefix_rows(seqs, max_len, seed):
    uid, hist, hist_len, target = prefix_rows(seqs, max_len)
    rng = np.random.default_rng(seed)
    # Interleave users' rows at random while keeping each user's rows in time order.
    key = rng.random(len(uid))
    for u in np.unique(uid):
        key[uid == u] = np.sort(key[uid == u])
    order = np.argsort(key)
    new_id = rng.permutation(len(seqs)) + 1
    users, flat, offsets = sequences_from_prefix_rows(new_id[uid[order]], hist[order], hist_len[order], target[order])
    assert sorted(users.tolist()) == users.tolist()
    for k, u in enumerate(users):
        original = int(np.flatnonzero(new_id == u)[0])
        assert flat[offsets[k] : offsets[k + 1]].tolist() == seqs[original]


@settings(max_examples=80, deadline=None)
@given(seqs=seq_lists, max_len=st.integers(1, 12))
def test_windows_hold_every_target_once_after_its_inputs(seqs, max_len):
    flat = np.concatenate([np.array(s) for s in seqs])
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    owner, inputs, targets, lengths = all_position_windows(flat, offsets, max_len)
    assert np.all((lengths >= 1) & (lengths <= max_len))
    for u, s in enumerate(seqs):
        mine = np.flatnonzero(owner == u)
        got = [t for w in mine[::-1] for t in targets[w, : lengths[w]]]  # windows come most recent first
        assert got == list(s[1:])
        ins = [t for w in mine[::-1] for t in inputs[w, : lengths[w]]]
        assert ins == list(s[:-1])
        assert lengths[mine[0]] == min(max_len, len(s) - 1)  # the most recent window is full
    assert np.all(inputs[np.arange(max_len)[None, :] >= lengths[:, None]] == 0)


@settings(max_examples=60, deadline=None)
@given(seqs=seq_lists, max_len=st.integers(1, 12), seed=st.integers(0, 100))
def test_random_cut_rows_are_real_prefix_rows(seqs, max_len, seed):
    flat = np.concatenate([np.array(s) for s in seqs])
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    rows = np.arange(len(seqs))
    history, length, target = random_cuts(flat, offsets, rows, max_len, np.random.default_rng(seed))
    uid, hist, hist_len, tgt = prefix_rows(seqs, max_len)
    allowed = {(int(u), tuple(h), int(n), int(t)) for u, h, n, t in zip(uid, hist, hist_len, tgt, strict=True)}
    for u in rows:
        assert (int(u), tuple(history[u]), int(length[u]), int(target[u])) in allowed


unique_seq_lists = st.lists(st.lists(st.integers(1, 99), min_size=2, max_size=30, unique=True), min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(seqs=unique_seq_lists, max_len=st.integers(1, 12), data=st.data())
def test_overlapping_windows_keep_every_target_once_with_enough_history(seqs, max_len, data):
    stride = data.draw(st.integers(1, max_len))
    flat = np.concatenate([np.array(s) for s in seqs])
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    shift = data.draw(st.none() | st.lists(st.integers(0, stride - 1), min_size=len(seqs), max_size=len(seqs)))
    owner, inputs, targets, lengths = all_position_windows(flat, offsets, max_len, stride, shift)
    assert np.all((lengths >= 1) & (lengths <= max_len))
    for u, s in enumerate(seqs):
        kept = {}  # pair index -> (target, history length in its window)
        for w in np.flatnonzero(owner == u):
            n = int(lengths[w])
            # each window is a contiguous run of the sequence (items unique): find where it starts
            start = next(i for i in range(len(s) - n) if list(s[i : i + n]) == inputs[w, :n].tolist())
            assert targets[w, n:].tolist() == [0] * (max_len - n)
            for c in range(n):
                if targets[w, c]:
                    assert start + c not in kept  # kept exactly once
                    kept[start + c] = (int(targets[w, c]), c + 1)
        assert sorted(kept) == list(range(len(s) - 1))
        for p, (target, history) in kept.items():
            assert target == s[p + 1]
            assert history >= min(p + 1, max_len - stride + 1)  # prefixes give min(p + 1, max_len)
        assert lengths[np.flatnonzero(owner == u)[0]] == min(max_len, len(s) - 1)  # most recent window full


def _padded_cost(lengths, order, batch_size):
    return sum(
        lengths[order[i : i + batch_size]].max() * len(order[i : i + batch_size])
        for i in range(0, len(order), batch_size)
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=400), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_length_grouped_batches_are_a_permutation_with_no_more_padding(lengths, batch_size, seed):
    lengths = np.array(lengths)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    batch_perm = rng.permutation(len(lengths) // batch_size)
    order = length_grouped_order(lengths, batch_size, perm, batch_perm)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    # The loader cuts consecutive slices: each must be one batch of a group sorted by length (ties in perm order).
    groups = [perm[i : i + GROUP_BATCHES * batch_size] for i in range(0, len(perm), GROUP_BATCHES * batch_size)]
    ranked = [[r for _, _, r in sorted((lengths[r], k, r) for k, r in enumerate(g))] for g in groups]
    expected = [frozenset(g[i : i + batch_size]) for g in ranked for i in range(0, len(g), batch_size)]
    assert sorted(map(sorted, map(frozenset, batches))) == sorted(map(sorted, expected))
    assert len(batches[-1]) == len(expected[-1])  # a short batch stays last
    if len(lengths) % batch_size == 0:
        # With full batches, sorted cuts of each group of the random order can only lower the padded work.
        assert _padded_cost(lengths, order, batch_size) <= _padded_cost(lengths, perm, batch_size)


@settings(max_examples=60, deadline=None)
@given(seq_lists, st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**16))
def test_split_rows_deal_every_target_once_evenly_with_its_inputs(seqs, max_len, splits, seed):
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    _, inputs, targets, _ = all_position_windows(np.concatenate(seqs), offsets, max_len)
    part = split_targets(targets, splits, np.random.default_rng(seed).random(targets.shape))
    assert np.array_equal(part >= 0, targets > 0) and part.max() < splits
    row_targets, row_lengths = zip(
        *(split_rows(targets, part, np.full(len(targets), c)) for c in range(splits)), strict=True
    )
    assert np.array_equal(sum(row_targets), targets)  # every target in exactly one row
    counts = np.stack([(t > 0).sum(1) for t in row_targets])  # [splits, W]
    assert (counts.max(0) - counts.min(0) <= 1).all()  # dealt evenly
    for t, length in zip(row_targets, row_lengths, strict=True):
        has = (t > 0).any(1)
        assert np.array_equal(length > 0, has)
        last = np.where(has, t.shape[1] - np.argmax((t > 0)[:, ::-1], axis=1), 0)
        assert np.array_equal(length, last)  # inputs reach the last own target, no further


@settings(max_examples=40, deadline=None)
@given(seqs=seq_lists, max_len=st.integers(1, 12), data=st.data())
def test_a_shift_moves_every_later_cut_by_the_shift(seqs, max_len, data):
    flat = np.concatenate([np.array(s) for s in seqs])
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    shift = np.array(data.draw(st.lists(st.integers(0, max_len - 1), min_size=len(seqs), max_size=len(seqs))))
    plain = all_position_windows(flat, offsets, max_len)
    owner, _, targets, lengths = all_position_windows(flat, offsets, max_len, None, shift)
    pairs = np.diff(offsets) - 1
    for u in range(len(seqs)):
        mine, before = np.flatnonzero(owner == u), np.flatnonzero(plain[0] == u)
        if not 0 < shift[u] < pairs[u]:
            assert np.array_equal(targets[mine], plain[2][before])  # no shift: the plain windows
            continue
        assert int((targets[mine[0]] > 0).sum()) == shift[u]  # the newest window keeps the last `shift`
        # the next windows are the plain windows of the sequence without its last `shift` items
        cut = all_position_windows(
            np.array(seqs[u][: len(seqs[u]) - shift[u]]), np.array([0, len(seqs[u]) - shift[u]]), max_len
        )
        assert np.array_equal(targets[mine[1:]], cut[2]) and np.array_equal(lengths[mine[1:]], cut[3])


@given(
    seqs=st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=40), min_size=1, max_size=12),
    max_len=st.integers(1, 8),
    data=st.data(),
)
@settings(max_examples=50, deadline=None)
def test_windows_filled_a_chunk_at_a_time_are_the_same(seqs, max_len, data):
    from recbole_rimirec.data import sequences

    flat = np.array([i for s in seqs for i in s], dtype=np.int64)
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    stride = data.draw(st.integers(1, max_len))
    shift = np.array([data.draw(st.integers(0, stride - 1)) for _ in seqs])
    whole = sequences.all_position_windows(flat, offsets, max_len, stride, shift)
    saved, sequences.WINDOW_CHUNK = sequences.WINDOW_CHUNK, 2
    try:
        chunked = sequences.all_position_windows(flat, offsets, max_len, stride, shift)
    finally:
        sequences.WINDOW_CHUNK = saved
    for a, b in zip(whole, chunked, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
