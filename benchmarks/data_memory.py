"""Peak memory of each stage of the data pipeline (issue: a million items), one JSON row per run.

Builds a model's data the way a run does (``create_dataset``, then ``data_preparation``) on a data set
such as the synthetic libraries of ``benchmarks/synthetic.py``, and records each stage's peak resident
memory: the prefix rows, the split, RimiRec's tree, the all-positions loader. Linux only: the peak
(``VmHWM``) is reset before each stage through ``/proc/self/clear_refs``.

Example:
    python benchmarks/data_memory.py --dataset synthetic-100000 --data_path <scratch folder> \\
        --out benchmarks/results/data-memory-cpu.jsonl
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GB = 2**20  # /proc reports kB


def memory() -> dict[str, float]:
    """The process's resident memory and its peak since the last reset, in GB."""
    found = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / GB
    return found


def reset_peak() -> None:
    """Sets the peak resident memory (VmHWM) to the current one."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def measured(owner, name: str, stage: str, rows: dict) -> None:
    """Wraps ``owner.name`` so each call records its stage's memory in ``rows[stage]``."""
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        gc.collect()
        reset_peak()
        before = memory()["VmRSS"]
        out = inner(*args, **kwargs)
        now = memory()
        rows[stage] = {
            "before_gb": round(before, 3),
            "peak_gb": round(now["VmHWM"], 3),
            "after_gb": round(now["VmRSS"], 3),
        }
        return out

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--model", default="RimiRec")
    parser.add_argument("--out", required=True, help="JSON lines, one row per run (appended)")
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/self/clear_refs"):
        print("data_memory.py needs Linux's /proc/self/clear_refs", file=sys.stderr)
        return 2

    from recbole.data.dataset import Dataset
    from recbole.utils import init_logger, init_seed
    from scale_train import MODELS, append_row

    from recbole_rimirec.config import Config
    from recbole_rimirec.data import loaders, prefix_rows, tree_dataset
    from recbole_rimirec.data.preparation import create_dataset, data_preparation

    stages: dict[str, dict] = {}
    measured(prefix_rows.FastPrefixRows, "data_augmentation", "prefix_rows", stages)
    measured(Dataset, "leave_one_out", "split", stages)
    measured(tree_dataset.TreeDataset, "_load_or_build", "tree", stages)
    measured(loaders.AllPositionsDataLoader, "__init__", "all_positions_loader", stages)
    settings = {"data_path": args.data_path, "seed": 2020, "show_progress": False, "state": "WARNING"}
    config = Config(args.model, args.dataset, config_dict={**settings, **MODELS.get(args.model, {})})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    reset_peak()
    dataset = create_dataset(config)
    loaded = {"peak_gb": round(memory()["VmHWM"], 3), "after_gb": round(memory()["VmRSS"], 3)}
    train, _, _ = data_preparation(config, dataset)
    gc.collect()
    row = {
        "model": args.model,
        "dataset": args.dataset,
        "prefix_rows": len(dataset.inter_feat),
        "train_rows": len(train._dataset),
        "stages": {"load": loaded, **stages},
        "data_peak_gb": max(loaded["peak_gb"], *(s["peak_gb"] for s in stages.values())),
        "after_data_gb": round(memory()["VmRSS"], 3),
    }
    append_row(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
