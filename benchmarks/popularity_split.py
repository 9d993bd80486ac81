"""Two sets of runs, paired over users and seeds, split by how popular each user's held-out item is.

A Recall@50 gap between two models can come from the head of the catalogue or from its tail. This
splits the test users into equal-count bins (quintiles by default) of their held-out item's training
popularity (the item's count over every user's training sequence, as the popularity sampler counts
it) and gives, per bin, each side's mean Recall@50 and NDCG@10 and B minus A, averaged over the seeds
both sides ran (the runs' ``test_ranks``; leave-one-out runs only).

Run:
    python benchmarks/popularity_split.py --dataset ml-100k --a <SASRecAllPos runs> --b <RimiRec runs> \
        [--data_path <folder>] [--bins 5] [--out f.json]

(runs: run JSON files or benchmark folders, as for ``compare_runs.py``). The test users' order is
RecBole's evaluation order, the same for every model and seed of a data set, so ranks pair by position.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from report import load_run, ndcg10, recall50, run_files


def popularity_bins(popularity: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Assigns users to equal-count bins of their held-out item's popularity.

    Args:
        popularity: [U] training count of each user's held-out item.
        bins: number of bins.

    Returns:
        (bin, edges): [U] bin index in ``[0, bins)``, lowest popularity first; [bins - 1] the count
        quantiles between bins (ties go to the higher bin, so bins can be unequal when counts repeat).
    """
    edges = np.quantile(popularity, np.arange(1, bins) / bins)
    return np.searchsorted(edges, popularity, side="right"), edges


def split_by_popularity(a: list[np.ndarray], b: list[np.ndarray], popularity: np.ndarray, bins: int = 5) -> list[dict]:
    """Each side's metrics, and B minus A, per popularity bin, averaged over the paired seeds.

    Args:
        a, b: per paired seed, each user's 0-based rank of the held-out item (-1 past the list).
        popularity: [U] training count of each user's held-out item.
        bins: number of equal-count bins.

    Returns:
        list of dicts, one per bin: ``bin``, ``users``, ``popularity`` ([low, high] counts in the bin),
        and ``a_``/``b_``/``b_minus_a_`` for ``recall@50`` and ``ndcg@10``.
    """
    which, _ = popularity_bins(popularity, bins)
    rows = []
    for k in range(bins):
        inside = which == k
        if not inside.any():
            continue
        row = {"bin": k, "users": int(inside.sum())}
        row["popularity"] = [int(popularity[inside].min()), int(popularity[inside].max())]
        for name, fn in (("recall@50", recall50), ("ndcg@10", ndcg10)):
            side_a = float(np.mean([fn(r)[inside].mean() for r in a]))
            side_b = float(np.mean([fn(r)[inside].mean() for r in b]))
            row.update({f"a_{name}": side_a, f"b_{name}": side_b, f"b_minus_a_{name}": side_b - side_a})
        rows.append(row)
    return rows


def target_popularity(dataset: str, data_path: str | None = None) -> np.ndarray:
    """The training popularity of each test user's held-out item, in RecBole's evaluation order.

    Args:
        dataset: the data set's name.
        data_path: the folder holding it (``None``: RecBole's default, where ml-100k ships).

    Returns:
        np.ndarray: [U] counts.
    """
    import torch

    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import create_dataset, data_preparation
    from recbole_rimirec.model.layers import item_counts

    settings = {"state": "WARNING", "show_progress": False}
    if data_path:
        settings["data_path"] = data_path
    config = Config("SASRecAllPos", dataset, config_dict=settings)
    train, _, test = data_preparation(config, create_dataset(config))
    counts = item_counts(train._dataset, train._dataset.item_num).numpy()
    field = train._dataset.iid_field
    targets = torch.cat([batch[0][field] for batch in test]).numpy()
    return counts[targets]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--a", nargs="+", required=True, help="run files or folders of the first model")
    parser.add_argument("--b", nargs="+", required=True, help="run files or folders of the second model")
    parser.add_argument("--data_path", help="folder holding <dataset>/ (ml-100k needs none)")
    parser.add_argument("--bins", type=int, default=5)
    parser.add_argument("--out", help="also write the split here as JSON")
    args = parser.parse_args(argv)
    try:
        sides = [
            {r["seed"]: r for r in map(load_run, run_files(paths)) if r["dataset"] == args.dataset}
            for paths in (args.a, args.b)
        ]
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seeds = sorted(
        s for s in set(sides[0]) & set(sides[1]) if "test_ranks" in sides[0][s] and "test_ranks" in sides[1][s]
    )
    if not seeds:
        print(f"error: no seed of {args.dataset} with test ranks on both sides", file=sys.stderr)
        return 2
    a, b = ([np.asarray(side[s]["test_ranks"]) for s in seeds] for side in sides)
    popularity = target_popularity(args.dataset, args.data_path)
    if len(popularity) != len(a[0]):
        print(f"error: the runs rank {len(a[0])} users, the split has {len(popularity)}", file=sys.stderr)
        return 2
    models = [sorted({side[s]["model"] for s in seeds}) for side in sides]
    result = {"dataset": args.dataset, "a": models[0], "b": models[1], "seeds": seeds}
    result["bins"] = split_by_popularity(a, b, popularity, args.bins)
    for row in result["bins"]:
        print(
            f"bin {row['bin']} ({row['users']} users, popularity {row['popularity'][0]}-{row['popularity'][1]}): "
            f"Recall@50 {row['a_recall@50']:.4f} -> {row['b_recall@50']:.4f} ({row['b_minus_a_recall@50']:+.4f}), "
            f"NDCG@10 {row['b_minus_a_ndcg@10']:+.4f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
