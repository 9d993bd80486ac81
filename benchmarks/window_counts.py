"""Counts of the all-positions path's training windows and targets per data set.

For each data set: RecBole's prefix rows (one target each), the all-positions windows and their
targets, targets per window, and the windows per batch that ``all_positions_batch_targets`` picks
for the given targets per batch, with the optimizer steps per epoch on both paths. Reads the data
only (no training), so it runs in about a minute per data set.

Run: python benchmarks/window_counts.py --datasets ml-100k amazon-beauty --data_path /path/to/data \
    --batch_targets 2048 --out benchmarks/results/window-counts.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_rimirec.config import Config  # noqa: E402
from recbole_rimirec.data.loaders import AllPositionsDataLoader, targets_field, train_sequences  # noqa: E402
from recbole_rimirec.data.preparation import create_dataset  # noqa: E402
from recbole_rimirec.data.sequences import windows_per_batch  # noqa: E402


def counts(
    dataset_name: str,
    data_path: str | None,
    batch_targets: int,
    model: str = "SASRecAllPos",
    max_len: int | None = None,
) -> dict:
    """The counts for one data set, with the model's default ``MAX_ITEM_LIST_LENGTH`` and no stride.

    Args:
        dataset_name: a RecBole data set name.
        data_path: the folder holding it (``None``: RecBole's own, for ml-100k).
        batch_targets: targets per batch to translate into windows.
        model: the all-positions model whose config is read.
        max_len: ``MAX_ITEM_LIST_LENGTH`` in place of the model's default.

    Returns:
        dict: the counts (see the module docstring).
    """
    # the plain cut: with all_positions_shift the rows also hold one (empty) slot per long sequence
    extra = {"train_mode": "all_positions", "all_positions_shift": False, "show_progress": False, "state": "WARNING"}
    if data_path:
        extra["data_path"] = data_path
    if max_len:
        extra["MAX_ITEM_LIST_LENGTH"] = max_len
    config = Config(model, dataset_name, config_dict=extra)
    train = create_dataset(config).build()[0]
    loader = AllPositionsDataLoader(config, train, shuffle=False)
    targets = int((loader._dataset.inter_feat[targets_field(train)] > 0).sum())
    windows = len(loader._dataset)
    _, _, offsets = train_sequences(train)
    pairs = np.diff(offsets) - 1  # targets per user
    long = pairs > config["MAX_ITEM_LIST_LENGTH"]  # the sequences all_positions_shift cuts at a random shift
    per_window = targets / windows
    per_batch = windows_per_batch(batch_targets, per_window)
    return {
        "dataset": dataset_name,
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
        "prefix_rows": len(train),
        "windows": windows,
        "targets": targets,
        "targets_per_window": round(per_window, 2),
        "batch_targets": batch_targets,
        "windows_per_batch": per_batch,
        "steps_per_epoch_prefixes": -(-len(train) // batch_targets),
        "steps_per_epoch_all_positions": -(-windows // per_batch),
        "users": len(pairs),
        "users_longer_than_window": int(long.sum()),
        "targets_in_them": int(pairs[long].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["ml-100k"])
    p.add_argument("--data_path", default=None, help="folder of the atomic files (ml-100k: RecBole's own copy)")
    p.add_argument("--batch_targets", type=int, default=2048)
    p.add_argument("--max_len", type=int, default=None, help="MAX_ITEM_LIST_LENGTH (default: the model's)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    rows = []
    for name in args.datasets:
        rows.append(
            counts(name, None if name == "ml-100k" else args.data_path, args.batch_targets, max_len=args.max_len)
        )
        print(json.dumps(rows[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
