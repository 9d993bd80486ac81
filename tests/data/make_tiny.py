"""Writes tests/data/tiny: a small synthetic data set in RecBole's atomic format.

300 users, 120 items in a planted 2-level hierarchy: 3 circles x 4 sub-circles x 10 items.
Each user follows two sub-circles; within a sub-circle the next item is often the one after the
last (a sequential pattern a causal model can learn). Run: python tests/data/make_tiny.py
"""

from pathlib import Path

import numpy as np

N_USERS, CIRCLES, SUBS, PER_SUB = 300, 3, 4, 10


def main() -> None:
    rng = np.random.default_rng(7)
    n_sub = CIRCLES * SUBS
    out = Path(__file__).parent / "tiny"
    out.mkdir(exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(N_USERS):
        subs = rng.choice(n_sub, size=2, replace=False)
        length = int(rng.integers(6, 26))
        last = {int(s): int(rng.integers(PER_SUB)) for s in subs}
        for t in range(length):
            s = int(subs[0] if rng.random() < 0.6 else subs[1])
            step = 1 if rng.random() < 0.6 else int(rng.integers(PER_SUB))
            last[s] = (last[s] + step) % PER_SUB
            item = s * PER_SUB + last[s] + 1
            lines.append(f"u{u}\ti{item}\t{t}")
    (out / "tiny.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tcircle:token\tsub_circle:token"]
    for s in range(n_sub):
        for k in range(PER_SUB):
            items.append(f"i{s * PER_SUB + k + 1}\tc{s // SUBS}\ts{s}")
    (out / "tiny.item").write_text("\n".join(items) + "\n")


if __name__ == "__main__":
    main()
