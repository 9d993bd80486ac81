"""Re-scores saved benchmark runs under other evaluation settings, without retraining.

For each given run (``<folder>/runs/<dataset>__<model>__<seed>.json`` whose best checkpoint is on
this machine), the test split is evaluated again with ``--set KEY=VALUE`` overrides (evaluation
keys: ``retrieval_score``, ``select_method``, ``select_budget``, ...) and a run record is written to
``<out>/runs/`` under the same name: the original record (its training, timings and validation
curve are the run's own) with the new test metrics, per-user ranks and retrieval statistics, the
overrides added to its ``config``, and ``rescored`` naming the original record and the overrides.
The best checkpoint was chosen by the original run's validation under its own settings.

Run: python benchmarks/rescore.py <folder>/runs/<run>.json ... --set retrieval_score=mixed --out <new folder>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

KEPT = ("nodes_per_user", "library_fraction", "retrieval_ms_per_user")


def saved_beside(record: dict, folder: Path) -> Path | None:
    """A run's best checkpoint found in its benchmark folder (for records that name it only as ``<path>``).

    Args:
        record: the run record.
        folder: the benchmark's ``checkpoints`` folder.

    Returns:
        Path | None: the newest best checkpoint of the same model, data set and seed.
    """
    from recbole_rimirec.checkpoint import load_checkpoint

    files = [p for p in folder.glob(f"{record['model']}-*.pth") if not p.name.endswith("-last.pth")]
    for path in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True):
        config = load_checkpoint(str(path)).get("config", {})
        if (config.get("dataset"), config.get("seed")) == (record["dataset"], record["seed"]):
            return path
    return None


def rescore(record_path: Path, overrides: dict) -> dict:
    """One run's record re-scored under ``overrides`` (see the module docstring).

    Args:
        record_path: the run's JSON record.
        overrides: evaluation keys to change.

    Returns:
        dict: the new record.

    Raises:
        FileNotFoundError: when the run's checkpoint is not on this machine.
    """
    from ann_eval import checkpoint_of
    from run import portable

    from recbole_rimirec.quick_start import evaluate_saved

    record = json.loads(record_path.read_text())
    checkpoint = checkpoint_of(record) or saved_beside(record, record_path.parent.parent / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"{record_path}: checkpoint {record.get('checkpoint')} is not on this machine")
    found = evaluate_saved(str(checkpoint), overrides)
    record["test_result"] = found["result"]
    record["test_ranks"] = found.get("test_ranks")
    if found.get("test_hits"):  # several targets per user (eval_protocol: comirec)
        record["test_hits"] = found["test_hits"]
    for key in KEPT:
        if key in found:
            record[key] = found[key]
    record["config"] = {**record.get("config", {}), **overrides}
    record["rescored"] = {"from": portable(str(record_path.resolve())), "set": overrides}
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run records (<folder>/runs/*.json)")
    parser.add_argument("--set", nargs="+", required=True, metavar="KEY=VALUE", help="evaluation keys to change")
    parser.add_argument("--out", required=True, help="results folder for the re-scored records")
    args = parser.parse_args(argv)
    from report import write_report
    from run import parse_value, record_command

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    record_command(out / "meta.json", sys.argv)
    for path in map(Path, args.runs):
        try:
            record = rescore(path, overrides)
        except FileNotFoundError as err:
            print(f"skipped: {err}", file=sys.stderr)
            continue
        (out / "runs" / path.name).write_text(json.dumps(record) + "\n")
        print(f"{path.name}: test NDCG@10 {record['test_result']['ndcg@10']}", file=sys.stderr)
    write_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
