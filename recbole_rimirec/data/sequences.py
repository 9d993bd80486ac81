"""Per-user training sequences rebuilt from RecBole's prefix rows, and the windows cut from them.

RecBole's ``SequentialDataset`` stores one row per prefix: (user, history of up to L items,
target). A user's training sequence is the first row's history followed by every row's target,
in order. These helpers work on plain arrays so they can be tested without a RecBole run.
"""

from __future__ import annotations

import numpy as np

from recbole_rimirec.errors import ConfigError

WINDOW_CHUNK = 1 << 16  # windows filled at a time by all_position_windows


def sequences_from_prefix_rows(
    uid: np.ndarray, hist: np.ndarray, hist_len: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rebuilds each user's training sequence from prefix rows.

    Args:
        uid: [R] user id of each row; a user's rows are in time order (not necessarily contiguous).
        hist: [R, L] left-aligned history item ids (0-padded).
        hist_len: [R] number of valid items in ``hist``.
        target: [R] the item that follows the history.

    Returns:
        (users, flat, offsets): ``users`` [U] sorted user ids; the sequence of ``users[k]`` is
        ``flat[offsets[k]:offsets[k + 1]]``.

    Raises:
        ConfigError: when consecutive rows of a user are not consecutive prefixes.
    """
    uid, hist, hist_len, target = np.asarray(uid), np.asarray(hist), np.asarray(hist_len), np.asarray(target)
    if len(uid) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    order = np.argsort(uid, kind="stable")
    uid, hist_len, target = uid[order], hist_len[order], target[order]  # hist stays as it is: [R, L] is GBs at scale
    starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
    same_user = np.r_[uid[1:] == uid[:-1]]
    # Row k+1 of a user must end its history with row k's target.
    last_of_next = hist[order[1:], np.maximum(hist_len[1:] - 1, 0)]
    if np.any(same_user & (last_of_next != target[:-1])):
        raise ConfigError("training rows are not consecutive prefixes of each user's sequence (is the data sorted?)")
    first_len = hist_len[starts]
    counts = np.diff(np.r_[starts, len(uid)])
    lengths = first_len + counts
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    flat = np.empty(offsets[-1], dtype=np.int64)
    # [R] position of each row's target inside flat: user offset + first history length + rank in user.
    user_of_row = np.repeat(np.arange(len(starts)), counts)
    rank = np.arange(len(uid)) - starts[user_of_row]
    flat[offsets[user_of_row] + first_len[user_of_row] + rank] = target
    for k, row in enumerate(order[starts]):
        flat[offsets[k] : offsets[k] + first_len[k]] = hist[row, : first_len[k]]
    return uid[starts], flat, offsets


def all_position_windows(
    flat: np.ndarray, offsets: np.ndarray, max_len: int, stride: int | None = None, shift: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cuts each sequence into windows of at most ``max_len`` (input, next item) pairs.

    Windows are cut from the end, ``stride`` pairs apart, so a user's most recent window is full.
    Every target of the sequence (all items but the first) is kept in exactly one window: the
    oldest window holding it, where it has the most history before it. With ``stride < max_len``
    windows overlap and every kept target has at least ``min(its position, max_len - stride)``
    items of history in its window; the targets of a window that a later-kept copy covers are
    0 (no loss there). ``stride = max_len`` (the default) gives non-overlapping windows.

    ``shift`` moves the cuts: a sequence with shift s > 0 gets one window ending at its last pair
    that keeps only its last s targets, then windows ending s, s + stride, ... pairs before the end,
    so the same item falls at another position of its window (and with another history) under
    another shift.

    Args:
        flat: concatenated sequences.
        offsets: [U + 1] sequence boundaries in ``flat``.
        max_len: the window length L (RecBole's ``MAX_ITEM_LIST_LENGTH``).
        stride: pairs between the ends of consecutive windows, 1 <= stride <= L; ``None`` = L.
        shift: [U] each sequence's shift, in [0, stride); ``None`` = 0.

    Returns:
        (owner, inputs, targets, lengths): ``owner`` [W] index of the sequence each window comes
        from (a sequence's windows together, most recent first); ``inputs`` and ``targets`` [W, L]
        left-aligned, 0-padded (targets also 0 where the pair is kept in an older window);
        ``lengths`` [W] number of inputs.
    """
    owner, start, lengths, kept_from = window_bounds(offsets, max_len, stride, shift)
    flat = np.asarray(flat)
    inputs = np.zeros((len(owner), max_len), dtype=np.int64)
    targets = np.zeros((len(owner), max_len), dtype=np.int64)
    col = np.arange(max_len)[None, :]  # [1, L]
    for lo in range(0, len(owner), WINDOW_CHUNK):  # a chunk of windows at a time: [W, L] temporaries stay small
        part = slice(lo, lo + WINDOW_CHUNK)
        valid = col < lengths[part, None]  # [w, L]
        pair = start[part, None] + col  # [w, L] pair index of each position
        pos = np.where(valid, offsets[owner[part]][:, None] + pair, 0)  # [w, L] index of each input in flat
        inputs[part] = np.where(valid, flat[pos], 0)
        keep = valid & (pair >= kept_from[part, None])
        targets[part] = np.where(keep, flat[np.minimum(pos + 1, len(flat) - 1)], 0)
    return owner, inputs, targets, lengths.astype(np.int64)


def window_bounds(
    offsets: np.ndarray, max_len: int, stride: int | None = None, shift: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the windows of :func:`all_position_windows` lie, without their items.

    Args:
        offsets: [U + 1] sequence boundaries.
        max_len: the window length L.
        stride: pairs between the ends of consecutive windows, 1 <= stride <= L; ``None`` = L.
        shift: [U] each sequence's shift, in [0, stride); ``None`` = 0.

    Returns:
        (owner, start, lengths, kept_from): [W] each: the window's sequence, its first pair, its number
        of pairs, and the first pair whose target it keeps (pairs are 0-based within the sequence).
    """
    offsets = np.asarray(offsets)
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride {stride} is not in [1, {max_len}]")
    pairs = np.diff(offsets) - 1  # [U] (input, target) pairs per sequence
    shift = np.zeros(len(pairs), dtype=np.int64) if shift is None else np.asarray(shift, dtype=np.int64)
    if len(shift) and (shift.min() < 0 or shift.max() >= stride):
        raise ValueError(f"shifts must be in [0, {stride})")
    shift = np.where(pairs > shift, shift, 0)  # nothing to shift past
    base = pairs - shift  # pairs up to the first regular cut
    n_win = np.where(base > 0, 1 + np.maximum(-(-(base - max_len) // stride), 0), 0) + (shift > 0)
    owner = np.repeat(np.arange(len(pairs)), n_win)
    # window j of a user (0 = most recent) ends at pair index pairs (j = 0 of a shifted sequence), else
    # at base - (j - [shifted]) * stride (exclusive).
    first = np.cumsum(n_win) - n_win
    j = np.arange(len(owner)) - np.repeat(first, n_win)
    shifted = (shift > 0)[owner]
    end = np.where(shifted & (j == 0), pairs[owner], base[owner] - (j - shifted) * stride)
    start = np.maximum(end - max_len, 0)
    # a window keeps the pairs after the next older window's end (the oldest window keeps all of its own)
    oldest = j == n_win[owner] - 1
    kept_from = np.where(oldest, 0, np.r_[end[1:], 0])
    return owner, start, end - start, kept_from


def split_targets(targets: np.ndarray, splits: int, keys: np.ndarray) -> np.ndarray:
    """Deals each window's targets out to ``splits`` copies of the window, at random and evenly.

    A window's targets, in the random order of ``keys``, go to copies 0, 1, ..., splits - 1, 0, ...
    so each copy holds ``floor`` or ``ceil`` of (targets / splits) of them and every target is in
    exactly one copy. Fed as separate rows, the copies spread a window's targets over several steps
    (at the same history), so a step of a given number of targets comes from ``splits`` times as
    many windows.

    Args:
        targets: [W, L] next-item targets, 0 where there is none.
        splits: copies per window, at least 1.
        keys: [W, L] random sort keys (say, uniform draws); equal keys keep position order.

    Returns:
        np.ndarray: [W, L] the copy of each target, -1 where there is no target.
    """
    has = targets > 0
    order = np.argsort(np.where(has, keys, np.inf), axis=1, kind="stable")  # targets first, in key order
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(targets.shape[1])[None, :], axis=1)  # [W, L] rank of each slot
    return np.where(has, rank % splits, -1)


def split_rows(targets: np.ndarray, part: np.ndarray, copy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The targets and input lengths of window copies (see :func:`split_targets`).

    Args:
        targets: [R, L] each row's window targets (all of them).
        part: [R, L] the copy of each target (-1 where there is none).
        copy: [R] which copy each row is.

    Returns:
        (targets, lengths): [R, L] the row's own targets (0 elsewhere) and [R] the inputs it needs:
        up to its last own target (a causal encoder ignores the rest), 0 when it has no target.
    """
    own = part == np.asarray(copy)[:, None]  # [R, L]
    last = targets.shape[1] - np.argmax(own[:, ::-1], axis=1)  # one past the last own target
    return np.where(own, targets, 0), np.where(own.any(1), last, 0)


def random_cuts(
    flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray, max_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws one random cut per chosen sequence: the history before it and the item at it.

    Args:
        flat: concatenated sequences.
        offsets: [U + 1] sequence boundaries.
        rows: [B] indices of the sequences to cut (each must hold at least 2 items).
        max_len: history length L; longer histories keep their last L items.
        rng: the random generator (its state decides the cuts).

    Returns:
        (history, length, target): ``history`` [B, L] left-aligned, 0-padded; ``length`` [B];
        ``target`` [B].
    """
    n = offsets[rows + 1] - offsets[rows]  # [B]
    cut = 1 + (rng.random(len(rows)) * (n - 1)).astype(np.int64)  # target position in [1, n)
    length = np.minimum(cut, max_len)
    col = np.arange(max_len)[None, :]
    valid = col < length[:, None]
    pos = offsets[rows][:, None] + (cut - length)[:, None] + col
    history = np.where(valid, flat[np.where(valid, pos, 0)], 0)
    return history.astype(np.int64), length.astype(np.int64), flat[offsets[rows] + cut].astype(np.int64)


def windows_per_batch(batch_targets: int, targets_per_window: float) -> int:
    """Windows per batch so that a batch holds about ``batch_targets`` targets on average.

    RecBole's prefix rows hold one target each, so its ``train_batch_size`` counts targets; an
    all-positions window holds many (Amazon Beauty: 5.8, ml-100k: ~40), and the same number of
    windows per batch gives each step that many times the targets and an epoch as many times fewer
    steps.

    Args:
        batch_targets: the targets wanted per batch (at least 1).
        targets_per_window: the epoch's mean targets per window.

    Returns:
        int: the nearest whole number of windows, at least 1.
    """
    return max(1, int(round(batch_targets / max(targets_per_window, 1e-9))))


GROUP_BATCHES = 50  # batches per sorted group: enough to find similar lengths, few enough to stay random


def length_grouped_order(lengths: np.ndarray, batch_size: int, perm: np.ndarray, batch_perm: np.ndarray) -> np.ndarray:
    """Orders rows so each batch holds rows of similar length, batches still in random order.

    The rows, in the random order ``perm``, are cut into groups of ``GROUP_BATCHES`` batches; each
    group is sorted by length and cut into batches; the full batches are then put in the order
    ``batch_perm``, a short last batch stays last. Batches padded to their longest row then hold
    little padding.

    Args:
        lengths: [N] length of each row.
        batch_size: rows per batch.
        perm: [N] a random permutation of the rows.
        batch_perm: a random permutation of ``range(N // batch_size)`` (the full batches).

    Returns:
        [N] the row order, a permutation of ``range(N)``; consecutive ``batch_size`` slices are the batches.
    """
    lengths, perm = np.asarray(lengths), np.asarray(perm)
    group = GROUP_BATCHES * batch_size
    sorted_rows = np.concatenate(
        [
            perm[i : i + group][np.argsort(lengths[perm[i : i + group]], kind="stable")]
            for i in range(0, len(perm), group)
        ]
        or [np.zeros(0, dtype=np.int64)]
    )
    # Only the last group can be short, so only the last batch can be: it stays last, where the
    # loader's consecutive slices of batch_size find it.
    full = len(sorted_rows) // batch_size
    batches = sorted_rows[: full * batch_size].reshape(full, batch_size)[np.asarray(batch_perm, dtype=np.int64)]
    return np.concatenate([batches.reshape(-1), sorted_rows[full * batch_size :]]).astype(np.int64)


def pack_windows(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Places windows side by side in rows of ``capacity`` slots, so short windows share a row.

    Greedy: the longest unplaced window opens a row, then the shortest unplaced ones fill it while
    they fit. Every window keeps its items contiguous and in order, and a row's windows fill its
    first slots without gaps.

    Args:
        lengths: [W] window lengths, each in [1, capacity].
        capacity: slots per row (``MAX_ITEM_LIST_LENGTH``).

    Returns:
        (row, start, segment, n_rows): for each window [W], its row, its first slot in that row, and
        its 1-based rank inside the row (0 is left for padding); ``n_rows`` rows in all.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"window lengths must be in [1, {capacity}]")
    order = np.argsort(-lengths, kind="stable")
    row, start, segment = (np.zeros(len(lengths), dtype=np.int64) for _ in range(3))
    lo, hi, n_rows = 0, len(lengths) - 1, 0
    while lo <= hi:
        take, used = [order[lo]], lengths[order[lo]]
        lo += 1
        while lo <= hi and used + lengths[order[hi]] <= capacity:
            take.append(order[hi])
            used += lengths[order[hi]]
            hi -= 1
        row[take], segment[take] = n_rows, np.arange(1, len(take) + 1)
        start[take] = np.r_[0, np.cumsum(lengths[take])[:-1]]
        n_rows += 1
    return row, start, segment, n_rows


def packed_rows(
    inputs: np.ndarray, targets: np.ndarray, lengths: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Packs left-aligned windows into shared rows (see :func:`pack_windows`).

    Args:
        inputs: [W, L] window inputs, left-aligned, 0-padded.
        targets: [W, L] next-item targets (0 = no loss there).
        lengths: [W] number of inputs per window.
        capacity: slots per packed row, at least ``max(lengths)``.

    Returns:
        (inputs, targets, positions, segments, used, first): [R, capacity] packed inputs and
        targets; positions: each slot's position inside its own window (0 on padding); segments:
        the window's 1-based rank in the row (0 on padding); used [R] slots filled; first [R] the
        index of each row's first window.
    """
    row, start, segment, n_rows = pack_windows(lengths, capacity)
    col = np.arange(inputs.shape[1])[None, :]  # [1, L]
    valid = col < lengths[:, None]  # [W, L]
    w, k = np.nonzero(valid)  # window and position of every real slot
    slot = row[w] * capacity + start[w] + k  # flat index into [R, capacity]
    out = [np.zeros(n_rows * capacity, dtype=np.int64) for _ in range(4)]
    out[0][slot], out[1][slot], out[2][slot], out[3][slot] = inputs[w, k], targets[w, k], k, segment[w]
    used = np.bincount(row, weights=lengths, minlength=n_rows).astype(np.int64)
    first = np.zeros(n_rows, dtype=np.int64)
    first[row[segment == 1]] = np.flatnonzero(segment == 1)
    return (*(a.reshape(n_rows, capacity) for a in out), used, first)
