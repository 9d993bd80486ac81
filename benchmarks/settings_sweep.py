"""Scores a saved RimiRec run under a grid of retrieval settings: the tool to choose serving keys on.

Every combination of the ``--grid`` values is scored on the chosen split (``valid`` to choose,
``test`` to report), with the run's own weights, from the rank of each user's held-out item (as
``rimirec_analysis.py`` does); the run's own setting is scored first. Keys are the config's names:
``select_method``, ``select_budget``, ``select_max_nodes``, ``retrieval``, ``retrieval_score``,
``global_score_weight``, ``alpha``, ``subcluster_size``, ``subcluster_pool``, ``subcluster_leaf_weight``.

Run: python benchmarks/settings_sweep.py <checkpoint.pth> --split valid \\
        --grid subcluster_size=8,16 subcluster_pool=0.2,0.3,0.5 --out <file>.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from time import perf_counter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rimirec_analysis import header, load, score_users, setting, summary  # noqa: E402
from run import parse_value  # noqa: E402

# config key -> the model attribute it sets
ATTRIBUTES = {
    "select_method": "selection",
    "select_budget": "budget",
    "select_max_nodes": "max_nodes",
    "retrieval": "backend",
    "retrieval_score": "score",
    "global_score_weight": "global_score_weight",
    "alpha": "alpha",
    "subcluster_size": "subcluster_size",
    "subcluster_pool": "subcluster_pool",
    "subcluster_leaf_weight": "subcluster_leaf_weight",
}
SHOWN = ("ndcg@10", "recall@10", "recall@50", "coverage", "library_fraction", "nodes_per_user", "ms_per_user")


def parse_grid(items: list[str]) -> dict[str, list]:
    """``key=v1,v2`` items as {key: [values]}.

    Args:
        items: the command line's grid items.

    Returns:
        dict: each key's values, read as YAML scalars.

    Raises:
        SystemExit: on a key the sweep does not know.
    """
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        if key not in ATTRIBUTES:
            raise SystemExit(f"unknown key '{key}': one of {', '.join(ATTRIBUTES)}")
        grid[key] = [parse_value(v) for v in values.split(",")]
    return grid


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2")
    parser.add_argument("--base", nargs="*", default=[], metavar="KEY=VALUE", help="set for every row, own row too")
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args(argv)
    base = {k: v[0] for k, v in parse_grid(args.base).items()}
    grid = parse_grid(args.grid)
    net, loader, _, config = load(args.checkpoint, args.split)
    n_items = int(net.tree.size[0])
    rows = []
    combos = [{}] + ([dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())] if grid else [])
    for combo in combos:
        keys = {**base, **combo}
        start = perf_counter()
        with setting(net, **{ATTRIBUTES[k]: v for k, v in keys.items()}):
            found = summary(score_users(net, loader), n_items)
        row = {"setting": keys, **{k: found[k] for k in SHOWN}, "seconds": perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        **header(args.checkpoint, config, args.split),
        "users": len(loader.dataset) if hasattr(loader, "dataset") else None,
        "run_setting": {k: getattr(net, a) for k, a in ATTRIBUTES.items()},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
