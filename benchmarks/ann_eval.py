"""Exact and ANN evaluation of the same trained weights: RimiRec and the multi-interest baselines.

For every saved run of a results folder whose model has a retrieval hook (RimiRec, ComiRecSA,
ComiRecDR, MIND), the test split is re-scored with each ``retrieval`` setting:

* ``full``: RecBole's full ranking (baselines only: the max over interests of every item's score);
* ``exact``: the model's serving rule by brute force (RimiRec: inside the generated nodes;
  baselines: top-N per interest, merged by score);
* ``faiss``: the same rule through the Faiss index.

Reported per run and setting: NDCG@10, Recall@10, Recall@50, the fraction of the library scored
per user, the retrieval time per user (inside the hook) and the whole test evaluation's seconds.
Evaluation only; the weights are the run's best checkpoint.

Run: python benchmarks/ann_eval.py benchmarks/results/amazon-beauty-cpu [--seeds 2020]
Writes ``<folder>/ann_eval.json`` and ``ann_eval.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from time import perf_counter

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "RimiRec": ("exact", "faiss"),
    "ComiRecSA": ("full", "exact", "faiss"),
    "ComiRecDR": ("full", "exact", "faiss"),
    "MIND": ("full", "exact", "faiss"),
}


def checkpoint_of(run: dict) -> Path | None:
    """The run's best checkpoint, or None when it is not on this machine.

    Args:
        run: one ``runs/*.json`` record.

    Returns:
        Path | None: the file (relative paths are read from the repository root).
    """
    if not run.get("checkpoint"):
        return None
    path = Path(run["checkpoint"])
    if not path.is_absolute():  # runs started from the repository root with a relative --out
        path = ROOT / path
    return path if path.exists() else None


def evaluate_settings(checkpoint: str, retrievals: tuple[str, ...]) -> list[dict]:
    """Re-scores the test split of one saved run once per retrieval setting.

    Args:
        checkpoint: the run's best checkpoint.
        retrievals: values of the ``retrieval`` key.

    Returns:
        list[dict]: one row per setting with metrics, library fraction and timings.
    """
    from recbole_rimirec.quick_start import evaluate_saved

    rows = []
    for retrieval in retrievals:
        start = perf_counter()
        out = evaluate_saved(checkpoint, {"retrieval": retrieval, "state": "WARNING", "show_progress": False})
        seconds = perf_counter() - start
        result = out["result"]
        rows.append(
            {
                "retrieval": retrieval,
                "ndcg@10": result["ndcg@10"],
                "recall@10": result["recall@10"],
                "recall@50": result["recall@50"],
                "library_fraction": out.get("library_fraction", 1.0),
                "retrieval_ms_per_user": out.get("retrieval_ms_per_user"),
                "eval_s": seconds,
            }
        )
    return rows


def markdown(rows: list[dict], threads: int, note: str = "") -> str:
    """The table of :func:`main`'s rows (``note``: the conditions of the run, printed above it)."""
    lines = ([note, ""] if note else []) + [
        f"Same weights, test split, each retrieval setting (torch threads: {threads}; `eval s` includes "
        "building the data split and the index). A baseline scans the whole library once per interest, so its",
        "library scored is the number of interests (400% = 4 scans); RimiRec scans only its selected nodes.",
        "",
        "| dataset | model | seed | retrieval | NDCG@10 | Recall@10 | Recall@50 | library scored | ms/user | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = "" if r["retrieval_ms_per_user"] is None else f"{r['retrieval_ms_per_user']:.2f}"
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['seed']} | {r['retrieval']} | {r['ndcg@10']:.4f} | "
            f"{r['recall@10']:.4f} | {r['recall@50']:.4f} | {100 * r['library_fraction']:.1f}% | {ms} | "
            f"{r['eval_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument(
        "--note", default="", help="conditions of this run (e.g. other work beside it), kept in the output"
    )
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    rows = []
    for path in sorted((folder / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        checkpoint = checkpoint_of(run)
        if run["model"] not in args.models or run["seed"] not in args.seeds or checkpoint is None:
            continue
        for row in evaluate_settings(str(checkpoint), SETTINGS[run["model"]]):
            rows.append({"dataset": run["dataset"], "model": run["model"], "seed": run["seed"], **row})
            print(json.dumps(rows[-1]), flush=True)
    if not rows:
        print(f"error: no saved runs of {', '.join(args.models)} for seeds {args.seeds} in {folder}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    saved = {"torch_threads": threads, "note": args.note, "rows": rows}
    (folder / "ann_eval.json").write_text(json.dumps(saved, indent=2) + "\n")
    (folder / "ann_eval.md").write_text(markdown(rows, threads, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
