"""Time per training epoch and per evaluated user of several models, measured in one process.

Timing ratios between separate runs mix in whatever else the machine was doing; this script builds
every model at its defaults on one data set and alternates them: ``--rounds`` rounds of one training
epoch each, then one full test evaluation each (RimiRec: its retrieval, the index built included;
the others: RecBole's full ranking). One JSON file: per model the epoch seconds of every round, their
median, the test seconds and the milliseconds per test user, and both as ratios to ``--baseline``'s.

Example (2-core CPU, one torch thread):
    OMP_NUM_THREADS=1 python benchmarks/epoch_cost.py --dataset amazon-beauty --data_path <data folder> \\
        --models RimiRec SASRecAllPos --baseline SASRecAllPos --out benchmarks/results/epoch-cost-amazon-beauty-cpu.json

A model may carry its own keys, ``Model@key=value,key=value`` (e.g. ``RimiRec@generator_decoder=True``), so two
settings of one model are timed side by side; the whole spec is its name in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from statistics import median
from time import perf_counter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def model_spec(spec: str, settings: dict) -> tuple[str, dict]:
    """A model name and its settings from ``Model`` or ``Model@key=value,key=value``.

    Args:
        spec: the ``--models`` entry.
        settings: the keys every model gets.

    Returns:
        tuple: (model name, settings with the spec's own keys on top).
    """
    from run import parse_value

    model, _, own = spec.partition("@")
    merged = dict(settings)
    for item in filter(None, own.split(",")):
        key, _, value = item.partition("=")
        merged[key] = parse_value(value)
    return model, merged


def build(model: str, settings: dict, dataset: str):
    """One model at its defaults with its trainer and loaders.

    Args:
        model: a model name (plugin first, then RecBole).
        dataset: a data set name.
        settings: config keys for every model (``data_path``, ``seed``...).

    Returns:
        tuple: (trainer, train_data, test_data, the number of test users).
    """
    import torch

    from recbole_rimirec.quick_start import prepare

    _, trainer, (train, _, test), _ = prepare(model, dataset, config_dict=settings)
    users = int(torch.unique(test.dataset.inter_feat[trainer.config["USER_ID_FIELD"]]).numel())
    return trainer, train, test, users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--models", nargs="+", default=["RimiRec", "SASRecAllPos"], help="Model or Model@key=value,...")
    parser.add_argument("--baseline", default="SASRecAllPos", help="the model the ratios divide by")
    parser.add_argument("--rounds", type=int, default=2, help="training epochs per model, alternated")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config for every model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch
    from run import parse_value

    settings = {"seed": args.seed, "show_progress": False, "state": "WARNING", "checkpoint_dir": "saved"}
    if args.data_path:
        settings["data_path"] = args.data_path
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = parse_value(value)
    built = {m: build(*model_spec(m, settings), args.dataset) for m in args.models}
    epochs: dict[str, list[float]] = {m: [] for m in args.models}
    for epoch in range(args.rounds):
        for m, (trainer, train, _, _) in built.items():
            trainer.model.train()
            start = perf_counter()
            trainer._train_epoch(train, epoch)
            epochs[m].append(perf_counter() - start)
            print(f"{m} epoch {epoch}: {epochs[m][-1]:.1f} s", flush=True)
    rows = {}
    for m, (trainer, _, test, users) in built.items():
        start = perf_counter()
        result = trainer.evaluate(test, load_best_model=False)
        seconds = perf_counter() - start
        rows[m] = {
            "keys": model_spec(m, {})[1],  # the model's own keys (Model@key=value)
            "epoch_s": epochs[m],
            "median_epoch_s": median(epochs[m]),
            "test_s": seconds,
            "test_users": users,
            "ms_per_test_user": 1000 * seconds / users,
            "test_ndcg@10_after_rounds": float(result["ndcg@10"]),
        }
        print(f"{m}: test {seconds:.1f} s, {rows[m]['ms_per_test_user']:.2f} ms a user", flush=True)
    base = rows.get(args.baseline)
    if base:
        for row in rows.values():
            row["epoch_ratio"] = row["median_epoch_s"] / base["median_epoch_s"]
            row["test_user_ratio"] = row["ms_per_test_user"] / base["ms_per_test_user"]
    out = {
        "command": ["benchmarks/epoch_cost.py", *(argv if argv is not None else sys.argv[1:])],
        "dataset": args.dataset,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "baseline": args.baseline,
        "models": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
