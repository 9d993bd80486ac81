"""A synthetic library with a planted hierarchy, of any size, as RecBole atomic files.

The items are cut into ``circles`` circles of ``sub_circles`` sub-circles each (equal sizes),
behind a random permutation of the ids so that nothing shows in the id order. A user holds a few
interests (sub-circles, drawn mostly inside one or two circles) with Dirichlet weights; a sequence
stays in one interest for a geometric run of items, then moves to another. Inside a sub-circle,
items are drawn with a Zipf popularity. ``<name>.item`` carries the planted ``circle`` and
``sub_circle`` of every item, so a learned tree can be scored against them (ARI).

Users are generated and written a chunk at a time: memory stays bounded by the chunk, whatever
the size. Example (1M items, 200k users, ~10M interactions):

    python benchmarks/synthetic.py --items 1000000 --users 200000 --interactions 10000000 --out <data_path>

writes ``<data_path>/synthetic-1000000/`` (``--name`` to change).
"""

from __future__ import annotations

import argparse
import os
import sys
from time import perf_counter

import numpy as np


def planted(n_items: int, circles: int, sub_circles: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted hierarchy: each sub-circle's items, and every item's circle and sub-circle.

    Args:
        n_items: library size (item ids 1..n_items).
        circles: top-level circles.
        sub_circles: sub-circles per circle.
        seed: the permutation's seed.

    Returns:
        (members, circle, sub): ``members`` [S, m] item ids of each sub-circle (S = circles x sub_circles,
        m = n_items // S; the remainder items join the last sub-circles' tails as extra ids, see ``sub``);
        ``circle`` and ``sub`` [n_items + 1] planted labels by item id (entry 0 unused).
    """
    S = circles * sub_circles
    if n_items < S:
        raise ValueError(f"{n_items} items cannot fill {S} sub-circles")
    ids = np.random.default_rng(seed).permutation(n_items) + 1  # hidden order
    m = n_items // S
    members = ids[: S * m].reshape(S, m)
    sub = np.zeros(n_items + 1, dtype=np.int64)
    sub[members] = np.arange(S)[:, None]
    sub[ids[S * m :]] = np.arange(n_items - S * m) % S  # the remainder, dealt out (never drawn)
    circle = sub // sub_circles
    return members, circle, sub


def zipf_cdf(m: int, exponent: float) -> np.ndarray:
    """Cumulative probabilities of ranks 0..m-1 under Zipf's law."""
    weights = 1.0 / np.arange(1, m + 1) ** exponent
    return np.cumsum(weights) / weights.sum()


def users_chunk(
    rng: np.random.Generator,
    n_users: int,
    mean_length: float,
    members: np.ndarray,
    sub_circles: int,
    cdf: np.ndarray,
    stay: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of a chunk of users.

    Args:
        rng: the generator.
        n_users: users in the chunk.
        mean_length: mean sequence length (at least 5 per user).
        members: [S, m] sub-circles' items.
        sub_circles: sub-circles per circle.
        cdf: [m] Zipf cumulative probabilities inside a sub-circle.
        stay: probability that the next item stays in the current interest.

    Returns:
        (user, item): [T] the chunk's events, each user's in order (user is 0-based in the chunk).
    """
    S, m = members.shape
    circles = S // sub_circles
    lengths = 5 + rng.geometric(1.0 / max(mean_length - 4, 1.0), n_users) - 1  # [U], mean ~ mean_length
    k = 1 + rng.poisson(1.5, n_users).clip(max=7)  # [U] interests per user
    home = rng.integers(0, circles, n_users)  # a user's main circle
    # interests: mostly sub-circles of the home circle, some anywhere
    local = home[:, None] * sub_circles + rng.integers(0, sub_circles, (n_users, 8))
    anywhere = rng.integers(0, S, (n_users, 8))
    interests = np.where(rng.random((n_users, 8)) < 0.7, local, anywhere)  # [U, 8]; the first k used
    user = np.repeat(np.arange(n_users), lengths)  # [T]
    T = len(user)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    switch = rng.random(T) >= stay
    switch[starts] = True
    segment = np.cumsum(switch) - 1  # [T] run id
    seg_user = user[switch]  # [R] the user of each run
    weights = rng.dirichlet(np.ones(8), n_users) * (np.arange(8)[None, :] < k[:, None])
    weights /= weights.sum(1, keepdims=True)
    pick = (rng.random(len(seg_user))[:, None] > np.cumsum(weights[seg_user], 1)).sum(1).clip(max=7)  # [R]
    sub_of_event = interests[seg_user, pick][segment]  # [T]
    rank = np.searchsorted(cdf, rng.random(T)).clip(max=m - 1)
    return user, members[sub_of_event, rank]


def generate(
    out: str,
    name: str,
    n_items: int,
    n_users: int,
    n_interactions: int,
    circles: int = 32,
    sub_circles: int = 32,
    exponent: float = 1.0,
    stay: float = 0.7,
    seed: int = 0,
    chunk: int = 50_000,
) -> dict:
    """Writes ``<out>/<name>/<name>.inter`` and ``.item``.

    Args:
        out: the data path.
        name: the data set name.
        n_items: library size.
        n_users: users.
        n_interactions: about how many interactions in all (the mean length is this / users, at least 5).
        circles: planted top-level circles.
        sub_circles: planted sub-circles per circle.
        exponent: Zipf exponent of popularity inside a sub-circle.
        stay: probability that a sequence stays in its current interest.
        seed: everything's seed.
        chunk: users generated and written at a time.

    Returns:
        dict: ``users``, ``items``, ``interactions``, ``seconds`` and the folder.
    """
    start = perf_counter()
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    members, circle, sub = planted(n_items, circles, sub_circles, seed)
    cdf = zipf_cdf(members.shape[1], exponent)
    rng = np.random.default_rng(seed + 1)
    total = 0
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for first in range(0, n_users, chunk):
            count = min(chunk, n_users - first)
            user, item = users_chunk(rng, count, n_interactions / n_users, members, sub_circles, cdf, stay)
            starts = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
            time = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))  # position
            block = np.column_stack([user + first + 1, item, time])
            f.write("\n".join("\t".join(map(str, row)) for row in block.tolist()) + "\n")
            total += len(user)
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as f:
        f.write("item_id:token\tcircle:token\tsub_circle:token\n")
        ids = np.arange(1, n_items + 1)
        f.write("\n".join(f"{i}\tc{c}\ts{s}" for i, c, s in zip(ids, circle[1:], sub[1:], strict=True)) + "\n")
    return {
        "users": n_users,
        "items": n_items,
        "interactions": total,
        "seconds": perf_counter() - start,
        "folder": folder,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--circles", type=int, default=32)
    parser.add_argument("--sub_circles", type=int, default=32)
    parser.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent inside a sub-circle")
    parser.add_argument("--stay", type=float, default=0.7, help="probability of staying in the current interest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="data set name (default synthetic-<items>)")
    parser.add_argument("--out", required=True, help="data path")
    args = parser.parse_args(argv)
    try:
        found = generate(
            args.out,
            args.name or f"synthetic-{args.items}",
            args.items,
            args.users,
            args.interactions,
            args.circles,
            args.sub_circles,
            args.exponent,
            args.stay,
            args.seed,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{found['users']} users, {found['items']} items, {found['interactions']} interactions "
        f"in {found['seconds']:.1f} s -> {found['folder']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
