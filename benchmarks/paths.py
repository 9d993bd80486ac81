"""Compares training paths (``train_mode``) of the same architecture: time and test quality.

Run: python benchmarks/paths.py --out benchmarks/results/paths-ml-100k-cpu RUNS [RUNS ...]
RUNS are run JSON files written by ``benchmarks/run.py`` or folders holding ``runs/*.json``.
RecBole's ``SASRec`` (prefixes) and the plugin's ``SASRecAllPos`` are one architecture; any other
model is compared with itself under another ``train_mode``. Writes ``table.md``, ``paths.json``,
``meta.json`` (this command) and ``curves.png`` (valid NDCG@10 against training seconds, one seed per
path) in ``--out``.

Every path is compared with the architecture's prefixes, and a length-grouped or packed path
(``all_positions_group_by_length``, ``all_positions_pack``) also with the same path without it. The
speed-up is the ratio of mean time to best valid (baseline / other): to the validation RecBole kept (the last of tied
best scores) and to the first validation that reached that score; it is given only when both paths ran with
the same torch thread count. Time-capped runs are shown, marked, and
never enter a ratio or a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from report import flat_row, folder_threads, paired_bootstrap, save_valid_curves

ARCHITECTURE = {"SASRec": "SASRec", "SASRecAllPos": "SASRec"}  # model -> architecture it shares
# per-run values averaged over seeds (report.flat_row's names, plus epochs to best and HR@10)
VALUES = (
    "epochs",
    "epochs_to_best",
    "s_per_epoch",
    "time_to_best_s",
    "time_to_first_best_s",
    "train_s",
    "valid_ndcg@10",
    "ndcg@10",
    "hit@10",
)


def run_files(paths: list[str]) -> list[Path]:
    """Expands folders into their ``runs/*.json``.

    Args:
        paths: run JSON files or benchmark folders.

    Returns:
        list[Path]: the run files, in the order given.

    Raises:
        FileNotFoundError: for a path that does not exist.
    """
    files = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run file or benchmark folder")
        files += sorted((p / "runs").glob("*.json")) if p.is_dir() else [p]
    return files


def load_run(path: Path) -> dict:
    """Reads a run JSON; a run without ``torch_threads`` takes its results folder's recorded count.

    Args:
        path: a run file, usually ``<folder>/runs/<run>.json``.

    Returns:
        dict: the run, with ``torch_threads`` from ``<folder>/meta.json`` where the run lacks it
        and the folder records one (see ``report.folder_threads``).
    """
    run = json.loads(path.read_text())
    if run.get("torch_threads") is None and path.parent.name == "runs":
        threads = folder_threads(path.parent.parent)
        if threads:
            run["torch_threads"] = threads
    return run


# set keys that make another path (a flag's name stands alone when true)
PATH_KEYS = {
    "all_positions_stride": "stride",
    "train_batch_size": "batch",
    "all_positions_batch_targets": "targets",
    "all_positions_group_by_length": "grouped",
    "all_positions_pack": "packed",
    "all_positions_splits": "splits",
    "all_positions_shift": "shifted",
}
DEFAULTS = {"all_positions_splits": 1}  # values that name no other path
PADDING_CUTS = (" grouped", " packed")  # paths also compared with the same path without them


def path_of(run: dict) -> str:
    """The training path of a run: its ``train_mode``, with the window stride, batch size or grouping when set.

    Args:
        run: a run result.

    Returns:
        str: e.g. ``prefixes``, ``all_positions``, ``all_positions stride 25``, ``all_positions batch 32``,
        ``all_positions grouped``, ``all_positions batch 350 packed``, ``all_positions targets 2048 packed``,
        ``all_positions targets 2048 packed splits 5``, ``all_positions targets 2048 packed shifted``.
    """
    config = run.get("config") or {}
    parts = [run.get("train_mode") or "prefixes"]

    def setting(key):  # the effective value, else the --set one (older runs)
        return run[key] if key in run else config.get(key)

    for key, short in PATH_KEYS.items():
        value = setting(key)
        if key == "train_batch_size" and setting("all_positions_batch_targets"):
            continue  # the batch is set in targets, not windows
        if value == DEFAULTS.get(key, object()):
            continue
        if isinstance(value, bool):
            parts += [short] if value else []
        elif value is not None:
            parts.append(f"{short} {value}")
    return " ".join(parts)


def baselines_of(mode: str) -> list[str]:
    """The paths a path is compared with: prefixes, and for a grouped or packed path the same path without it.

    Args:
        mode: a path as :func:`path_of` names it.

    Returns:
        list[str]: baseline paths (none for ``prefixes`` itself).
    """
    if mode == "prefixes":
        return []
    return ["prefixes"] + [mode.replace(cut, "") for cut in PADDING_CUTS if cut in mode]


def _epochs_to_best(run: dict) -> int | None:
    best = run["timings"].get("best_epoch")  # 0-based
    return None if best is None else best + 1


def time_to_first_best(run: dict) -> float | None:
    """Training seconds until the run first scored its best valid score.

    RecBole's early stopping takes a validation equal to the best (valid scores are rounded to
    ``metric_decimal_place``) as a new best, so ``best_epoch`` and ``time_to_best_s`` name the last of
    tied validations; on a long plateau that is many epochs after the score was first reached.

    Args:
        run: a run result; its ``timings.valid_curve`` lists ``train_s`` and ``valid_score`` per validation.

    Returns:
        float | None: the training seconds at the first validation with the highest score, ``None``
        without a curve or with one that does not start at the first validation.
    """
    curve = run["timings"].get("valid_curve")
    if not curve:
        return None
    step = curve[1]["epochs"] - curve[0]["epochs"] if len(curve) > 1 else curve[0]["epochs"]
    if curve[0]["epochs"] != step:  # resumed from a checkpoint that had no curve: the start is missing
        return None
    best = max(point["valid_score"] for point in curve)
    return next(point["train_s"] for point in curve if point["valid_score"] == best)


def summarize(runs: list[dict]) -> dict:
    """Groups runs by (dataset, architecture, path) and compares each path with the architecture's prefixes.

    An architecture whose only prefix runs have settings of their own (``prefixes batch 2048``) is
    compared with those.

    Args:
        runs: run results as written by ``benchmarks/run.py``.

    Returns:
        dict: ``groups`` (one entry per dataset / architecture / path, means and stds over seeds) and
        ``comparisons`` (per dataset / architecture / path other than prefixes: time ratios against
        prefixes and the paired bootstrap of test NDCG@10, prefixes minus that path, over the seeds
        both ran).
    """
    by = defaultdict(list)
    for r in runs:
        key = (r["dataset"], ARCHITECTURE.get(r["model"], r["model"]), path_of(r))
        by[key].append(r)
    groups, used_runs = {}, {}
    for (dataset, arch, mode), rs in sorted(by.items()):
        key = f"{dataset}/{arch}/{mode}"
        used_runs[key] = used = [r for r in rs if not r.get("time_capped")] or rs
        entry = {
            "models": sorted({r["model"] for r in rs}),
            "seeds": sorted(r["seed"] for r in used),
            "time_capped": all(r.get("time_capped") for r in rs),
            "threads": sorted({r.get("torch_threads") for r in used}, key=str),
        }
        rows = [
            {
                **flat_row(r),
                "epochs_to_best": _epochs_to_best(r),
                "time_to_first_best_s": time_to_first_best(r),
                "hit@10": r["test_result"]["hit@10"],
            }
            for r in used
        ]
        for name in VALUES:
            vals = [row[name] for row in rows if row.get(name) is not None]
            if vals and (name != "time_to_first_best_s" or len(vals) == len(rows)):  # not from some seeds only
                entry[name] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
        groups[key] = entry
    comparisons = {}
    for key, fast in groups.items():
        dataset, arch, mode = key.split("/")
        for base in baselines_of(mode):
            if base == "prefixes" and f"{dataset}/{arch}/prefixes" not in groups:
                base = _only_prefix_path(groups, dataset, arch) or base
            slow_key = f"{dataset}/{arch}/{base}"
            slow = groups.get(slow_key)
            if slow is None or base == mode or slow["time_capped"] or fast["time_capped"]:
                continue
            name = key if base == "prefixes" else f"{key} vs {base}"
            comparisons[name] = _compare(slow, fast, used_runs[slow_key], used_runs[key], base)
    return {"groups": groups, "comparisons": comparisons}


def _only_prefix_path(groups: dict, dataset: str, arch: str) -> str | None:
    """The architecture's one prefix path with its own settings (``prefixes batch 2048``), if it has only one."""
    found = [key.split("/")[2] for key in groups if key.startswith(f"{dataset}/{arch}/prefixes ")]
    return found[0] if len(found) == 1 else None


def _compare(slow: dict, fast: dict, slow_runs: list[dict], fast_runs: list[dict], base: str) -> dict:
    """Time ratios (base / other, same thread count only) and test NDCG@10 of base minus other."""
    same_threads = fast["threads"] == slow["threads"] and len(fast["threads"]) == 1
    out = {
        "base": base,
        "same_threads": same_threads,
        "ndcg@10_base_minus_other": slow["ndcg@10"]["mean"] - fast["ndcg@10"]["mean"],
        "seeds": [slow["seeds"], fast["seeds"]],  # the means compared are over these (base, other)
    }
    if same_threads:
        for name in ("s_per_epoch", "time_to_best_s", "time_to_first_best_s", "train_s"):
            if name in slow and name in fast:
                out[f"{name}_ratio"] = slow[name]["mean"] / fast[name]["mean"]
    a = {r["seed"]: np.array(r["test_ranks"]) for r in slow_runs if "test_ranks" in r}
    b = {r["seed"]: np.array(r["test_ranks"]) for r in fast_runs if "test_ranks" in r}
    common = sorted(set(a) & set(b))
    if common:
        out["paired_seeds"] = common
        out["bootstrap"] = paired_bootstrap([a[s] for s in common], [b[s] for s in common])
    return out


def markdown(summary: dict) -> str:
    """The paths table and one line per architecture compared.

    Args:
        summary: the output of :func:`summarize`.

    Returns:
        str: Markdown.
    """

    def cell(entry: dict, name: str, fmt: str) -> str:
        if name not in entry:
            return ""
        v = entry[name]
        return fmt.format(v["mean"]) + (f" ± {fmt.format(v['std'])}" if len(entry["seeds"]) > 1 else "")

    lines = [
        "Training paths (test split, leave-one-out, full ranking or the model's retrieval; mean ± std over seeds; "
        "times are training seconds, validation excluded):",
        "",
        "| dataset | architecture | path (models) | seeds | threads | epochs | epochs to best | s/epoch "
        "| s to best valid | s to first reach it | best valid NDCG@10 | test NDCG@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, e in summary["groups"].items():
        dataset, arch, mode = key.split("/")
        capped = " (time-capped)" if e["time_capped"] else ""
        threads = ", ".join(str(t) if t else "default" for t in e["threads"])
        cells = [dataset, arch, f"{mode}{capped} ({', '.join(e['models'])})", str(len(e["seeds"])), threads]
        cells += [cell(e, "epochs", "{:.0f}"), cell(e, "epochs_to_best", "{:.0f}"), cell(e, "s_per_epoch", "{:.1f}")]
        cells += [cell(e, "time_to_best_s", "{:.0f}"), cell(e, "time_to_first_best_s", "{:.0f}")]
        cells.append(cell(e, "valid_ndcg@10", "{:.4f}"))
        cells += [cell(e, "ndcg@10", "{:.4f}"), cell(e, "hit@10", "{:.4f}")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for key, c in summary["comparisons"].items():
        dataset, arch, mode = key.split(" vs ")[0].split("/")
        base = c["base"]
        text = f"- {dataset} {arch}, {mode} against {base}: "
        if c["same_threads"]:
            first = c.get("time_to_first_best_s_ratio")
            text += f"best valid reached {c['time_to_best_s_ratio']:.1f}x sooner"
            text += f" ({first:.1f}x to first reach it, " if first is not None else " ("
            text += f"{c['s_per_epoch_ratio']:.1f}x less time per epoch"
            base_seeds, other_seeds = c["seeds"]
            if base_seeds != other_seeds:
                text += f"; means over {len(base_seeds)} and {len(other_seeds)} seeds"
            text += "); "
        else:
            text += "thread counts differ, no time ratio; "
        text += f"test NDCG@10 {base} - {mode} {c['ndcg@10_base_minus_other']:+.4f}"
        if "bootstrap" in c:
            b = c["bootstrap"]
            text += (
                f" (paired over seeds {', '.join(map(str, c['paired_seeds']))}: {b['mean']:+.4f}, "
                f"95% bootstrap over users {b['low']:+.4f} to {b['high']:+.4f})"
            )
        lines.append(text)
    return "\n".join(lines) + "\n"


def curves(runs: list[dict], png: Path) -> None:
    """Valid NDCG@10 against training seconds: one curve per dataset / architecture / path (its lowest seed).

    Args:
        runs: run results (those without a ``valid_curve`` or time-capped are skipped).
        png: the file to write.
    """
    first = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        key = (r["dataset"], ARCHITECTURE.get(r["model"], r["model"]), path_of(r))
        if r["timings"].get("valid_curve") and not r.get("time_capped"):
            first.setdefault(key, r)
    series = [
        (f"{arch} {path} ({dataset}, seed {r['seed']})", r["timings"]["valid_curve"])
        for (dataset, arch, path), r in sorted(first.items())
    ]
    save_valid_curves(series, png, "validation score against training time, by training path")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for table.md, paths.json, meta.json, curves.png")
    parser.add_argument("runs", nargs="+", help="run JSON files or benchmark folders")
    args = parser.parse_args(argv)
    try:
        files = run_files(args.runs)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no run JSON files in {' '.join(args.runs)}", file=sys.stderr)
        return 2
    runs = [load_run(f) for f in files]
    summary = summarize(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paths.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(markdown(summary))
    meta = {"argv": sys.argv, "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    try:
        curves(runs, out / "curves.png")
    except ImportError:
        print("matplotlib is not installed: no curves plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
