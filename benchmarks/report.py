"""Turns a benchmark folder's runs/*.json into results.csv, results.json, table.md and PNG plots.

Run alone to rebuild a report: python benchmarks/report.py benchmarks/results/<name>
Under leave-one-out there is one target per user, so Recall@K equals Hit@K: the tables show Recall.
Runs under ``eval_protocol: comirec`` (several targets per user) get ComiRec's columns (Recall, Hit
and NDCG at 20 and 50) and paired intervals from each user's figures (``test_hits``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

METRICS = ["recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50"]
COMIREC_METRICS = ["recall@20", "recall@50", "hit@20", "hit@50", "ndcg@20", "ndcg@50"]
PROTOCOLS = {  # per eval_protocol: the table's columns, the paired comparisons' metrics, the caption
    "leave_one_out": (METRICS, ("ndcg@10",), "leave-one-out, full ranking"),
    "comirec": (
        COMIREC_METRICS,
        ("ndcg@20", "recall@50"),
        "ComiRec's protocol: users split 8:1:1, a held-out user's first 80% in, the rest as targets; full ranking",
    ),
}
ALL_METRICS = list(dict.fromkeys(METRICS + COMIREC_METRICS))
BAR_MODELS = ("SASRecAllPos", "SASRec")  # the SASRec-CE bar: the better path that ran uncapped


def folder_threads(folder: Path) -> int | None:
    """The thread count a results folder's ``meta.json`` records for every command run into it.

    Runs made before ``torch_threads`` was written to their JSON lack it; where every command of
    a folder was started with ``OMP_NUM_THREADS=N``, its ``meta.json`` says so (set by hand,
    ``omp_num_threads_all_commands``).

    Args:
        folder: a benchmark results folder (holding ``runs/`` and ``meta.json``).

    Returns:
        int | None: N, or ``None`` where the folder records none.
    """
    meta = folder / "meta.json"
    value = json.loads(meta.read_text()).get("omp_num_threads_all_commands") if meta.exists() else None
    return int(value) if value else None


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


def load_runs(folder: Path) -> list[dict]:
    runs = []
    for path in sorted((folder / "runs").glob("*.json")):
        runs.append(json.loads(path.read_text()))
    return runs


def flat_row(run: dict) -> dict:
    t = run["timings"]
    row = {
        "dataset": run["dataset"],
        "model": run["model"],
        "seed": run["seed"],
        "train_mode": run.get("train_mode"),
        "epochs": t["epochs"],
        "s_per_epoch": float(np.mean(t["epoch_s"])) if t["epoch_s"] else None,
        "train_s": t["train_s"],
        "time_to_best_s": t.get("time_to_best_s"),
        "eval_s": t["eval_s"],
        "time_capped": run.get("time_capped", False),
        "device": run.get("device", "cpu"),
        "eval_protocol": protocol_of_run(run),
    }
    for m in ALL_METRICS:
        row[m] = run["test_result"].get(m)
    row["valid_ndcg@10"] = (run.get("best_valid_result") or {}).get("ndcg@10")
    for key in ("nodes_per_user", "library_fraction", "retrieval_ms_per_user", "torch_threads"):
        row[key] = run.get(key)
    return row


def protocol_of_run(run: dict) -> str:
    """A run's ``eval_protocol`` (runs made before the key existed are leave-one-out)."""
    return (run.get("config") or {}).get("eval_protocol") or "leave_one_out"


def user_values(run: dict, metric: str) -> np.ndarray:
    """Each test user's ``recall@k``, ``hit@k`` or ``ndcg@k`` in a run: from ``test_hits`` where the run has
    several targets per user, else from ``test_ranks`` (one target: Recall@k = Hit@k).

    Args:
        run: a run JSON.
        metric: e.g. ``ndcg@10``.

    Returns:
        np.ndarray: [U] per test user, in the run's user order.
    """
    from recbole_rimirec.evaluation import user_metric

    if run.get("test_hits"):
        return user_metric(run["test_hits"]["ranks"], run["test_hits"]["positives"], metric)
    ranks = np.asarray(run["test_ranks"])
    return user_metric([[r] if r >= 0 else [] for r in ranks.tolist()], [1] * len(ranks), metric)


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    inside = (ranks >= 0) & (ranks < 10)
    return np.where(inside, 1.0 / np.log2(np.where(inside, ranks, 0) + 2.0), 0.0)


def recall50(ranks: np.ndarray) -> np.ndarray:
    return ((ranks >= 0) & (ranks < 50)).astype(float)


def paired_bootstrap(a: list[np.ndarray], b: list[np.ndarray], n: int = 2000, seed: int = 0, metric=ndcg10) -> dict:
    """Mean over seeds of per-user metric differences (a - b), with a 95% bootstrap interval over users.

    Args:
        a, b: per seed, each user's 0-based rank of the held-out item (-1 past the list).
        n: bootstrap draws.
        seed: their seed.
        metric: per-user metric from ranks (:func:`ndcg10`, the default, or :func:`recall50`).
    """
    diff = np.mean([metric(x) - metric(y) for x, y in zip(a, b, strict=True)], axis=0)  # [U]
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n)])
    return {
        "mean": float(diff.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
    }


def aggregate(rows: list[dict]) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["model"])].append(r)  # a folder holds one protocol
    out = {}
    for (dataset, model), rs in groups.items():
        entry = {"seeds": len(rs), "time_capped": any(r["time_capped"] for r in rs)}
        entry["eval_protocol"] = rs[0].get("eval_protocol") or "leave_one_out"
        keys = ["s_per_epoch", "train_s", "time_to_best_s", "epochs", "eval_s", "library_fraction"]
        keys += ["retrieval_ms_per_user", "torch_threads"]
        for key in ALL_METRICS + keys:
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                entry[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
        out[f"{dataset}/{model}"] = entry
    return out


def markdown(agg: dict, comparisons: dict, device: str) -> str:
    lines = []
    partial = False
    datasets = sorted({k.split("/")[0] for k in agg})
    for dataset in datasets:
        models = {k.split("/", 1)[1]: v for k, v in agg.items() if k.startswith(dataset + "/")}
        protocol = next(iter(models.values())).get("eval_protocol", "leave_one_out")
        columns, compared, caption = PROTOCOLS[protocol]
        lines.append(f"**{dataset}** ({device}, test split, {caption}; mean ± std over seeds)")
        lines.append("")
        header = ["model", "seeds"] + [m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in columns]
        header = [h.replace("hit", "Hit") for h in header]
        header += ["epochs", "s/epoch", "s to best valid", "train s"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        full = max(v["seeds"] for v in models.values())
        partial |= any(v["seeds"] < full for v in models.values())
        best = {}
        for m in columns:
            vals = [v[m]["mean"] for v in models.values() if m in v and not v["time_capped"] and v["seeds"] == full]
            best[m] = max(vals) if vals else None
        # rows with every seed first, each group by its headline metric
        order = sorted(
            models.items(), key=lambda kv: (kv[1]["seeds"] < full, -kv[1].get(compared[0], {"mean": 0})["mean"])
        )
        for model, v in order:
            cells = [model + (" (time-capped)" if v["time_capped"] else ""), str(v["seeds"])]
            if v["seeds"] < full:
                cells[1] += f" of {full}"
            for m in columns:
                if m not in v:
                    cells.append("")
                    continue
                text = f"{v[m]['mean']:.4f} ± {v[m]['std']:.4f}"
                cells.append(f"**{text}**" if best[m] is not None and v[m]["mean"] == best[m] else text)
            for key, fmt in (
                ("epochs", "{:.0f}"),
                ("s_per_epoch", "{:.2f}"),
                ("time_to_best_s", "{:.0f}"),
                ("train_s", "{:.0f}"),
            ):
                cells.append(fmt.format(v[key]["mean"]) if key in v else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += speed_table(models)
        for name, by_metric in comparisons.items():
            if name.startswith(dataset + "/"):
                parts = [
                    f"{metric.replace('recall', 'Recall').replace('ndcg', 'NDCG')} difference {c['mean']:+.4f} "
                    f"(95% paired bootstrap over users: {c['low']:+.4f} to {c['high']:+.4f})"
                    for metric, c in by_metric.items()
                ]
                lines.append(f"- {name.split('/', 1)[1]}: " + "; ".join(parts))
        lines.append("")
    protocols = {v.get("eval_protocol", "leave_one_out") for v in agg.values()}
    notes = ["Recall@K equals Hit@K under leave-one-out (one target per user)."] if "leave_one_out" in protocols else []
    if "comirec" in protocols:
        notes.append("Under ComiRec's protocol Recall@K is hits / targets, Hit@K any hit, NDCG@K over the target set.")
    notes.append("Time-capped runs are never best.")
    if partial:
        notes.append("Rows with fewer seeds than the table's others (\"1 of 3\") sit below them and are never best.")
    lines.append(" ".join(notes))
    return "\n".join(lines) + "\n"


def speed_table(models: dict) -> list[str]:
    """Cost beside the SASRec of the same run: time per epoch, test evaluation, library scored.

    Ratios are given only between runs made with the same torch thread count (runs that did
    not record it count as the machine's default).

    Args:
        models: aggregated entries of one data set, by model name.

    Returns:
        list[str]: Markdown lines (empty when no SASRec is in the run).
    """
    ref_name = next((m for m in ("SASRecAllPos", "SASRec") if m in models), None)
    if ref_name is None:
        return []
    ref = models[ref_name]
    lines = [
        f"Cost relative to {ref_name} in the same run (test evaluation: the whole test split through "
        "RecBole's evaluation, full ranking or the model's retrieval; ratios only at equal thread counts):",
        "",
        f"| model | threads | s/epoch | x {ref_name} | test eval s | x {ref_name} | library scored | ms/user |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def threads(v: dict) -> str:
        return f"{v['torch_threads']['mean']:.0f}" if "torch_threads" in v else "default"

    def ratio(v: dict, key: str) -> str:
        if key not in v or key not in ref or not ref[key]["mean"] or threads(v) != threads(ref):
            return ""
        return f"{v[key]['mean'] / ref[key]['mean']:.2f}"

    for model, v in sorted(models.items(), key=lambda kv: kv[1].get("s_per_epoch", {"mean": 0})["mean"]):
        lib = f"{v['library_fraction']['mean']:.1%}" if "library_fraction" in v else "100%"
        ms = f"{v['retrieval_ms_per_user']['mean']:.2f}" if "retrieval_ms_per_user" in v else ""
        epoch = f"{v['s_per_epoch']['mean']:.2f}" if "s_per_epoch" in v else ""
        ev = f"{v['eval_s']['mean']:.1f}" if "eval_s" in v else ""
        lines.append(
            f"| {model} | {threads(v)} | {epoch} | {ratio(v, 's_per_epoch')} | {ev} | {ratio(v, 'eval_s')} | {lib} "
            f"| {ms} |"
        )
    lines.append("")
    return lines


def comparisons_of(runs: list[dict]) -> dict:
    """RimiRec against every other model of its dataset, paired over users and common seeds.

    Args:
        runs: run JSONs (those without per-user results, or time-capped, are left out).

    Returns:
        dict: ``"<dataset>/RimiRec - <model>"`` -> {metric: ``paired_bootstrap``} for the protocol's
        compared metrics (NDCG@10 under leave-one-out; NDCG@20 and Recall@50 under ComiRec's).
    """
    by = defaultdict(dict)
    for r in runs:
        if ("test_ranks" in r or "test_hits" in r) and not r.get("time_capped"):
            by[(r["dataset"], r["model"])][r["seed"]] = r
    out = {}
    for (dataset, model), seeds in by.items():
        if model != "RimiRec":
            continue
        compared = PROTOCOLS[protocol_of_run(next(iter(seeds.values())))][1]
        for other_key, other in by.items():
            if other_key[0] != dataset or other_key[1] == "RimiRec":
                continue
            both = sorted(set(seeds) & set(other))  # with every hit on both sides, or first ranks on both
            common = [s for s in both if bool(seeds[s].get("test_hits")) == bool(other[s].get("test_hits"))]
            a = {m: [user_values(seeds[s], m) for s in common] for m in compared}
            b = {m: [user_values(other[s], m) for s in common] for m in compared}
            if common and all(len(x) == len(y) for x, y in zip(a[compared[0]], b[compared[0]], strict=True)):
                out[f"{dataset}/RimiRec - {other_key[1]}"] = {
                    m: paired_bootstrap(a[m], b[m], metric=lambda v: v) for m in compared
                }
    return out


def plots(rows: list[dict], agg: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    for dataset in datasets:
        models = sorted(
            {r["model"] for r in rows if r["dataset"] == dataset},
            key=lambda m: -agg[f"{dataset}/{m}"].get("ndcg@10", {"mean": 0})["mean"],
        )
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(models)), 4))
        width = 0.25
        for j, metric in enumerate(["ndcg@10", "recall@10", "recall@20"]):
            means = [agg[f"{dataset}/{m}"].get(metric, {"mean": 0})["mean"] for m in models]
            stds = [agg[f"{dataset}/{m}"].get(metric, {"std": 0})["std"] for m in models]
            ax.bar(np.arange(len(models)) + (j - 1) * width, means, width, yerr=stds, label=metric, capsize=2)
        ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
        ax.set_title(f"{dataset}: test metrics (mean ± std over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / f"metrics_{dataset}.png", dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    models = sorted({r["model"] for r in rows})
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    markers = {d: "os^Dv"[i % 5] for i, d in enumerate(datasets)}
    for dataset in datasets:
        for m in models:
            mine = [r for r in rows if r["dataset"] == dataset and r["model"] == m]
            if mine:
                ax.scatter(
                    [r["train_s"] for r in mine],
                    [r["ndcg@10"] for r in mine],
                    s=22,
                    color=colors[m],
                    marker=markers[dataset],
                    label=f"{m} ({dataset})",
                )
    ax.legend(fontsize=7, loc="best")
    ax.set_xscale("log")
    ax.set_xlabel("training time to early stop (s, log)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title("training time vs test NDCG@10 (one point per seed)")
    fig.tight_layout()
    fig.savefig(folder / "time_vs_ndcg.png", dpi=110)
    plt.close(fig)


def write_report(folder: Path) -> None:
    """Writes results.csv, results.json, table.md and the plots for a benchmark folder."""
    folder = Path(folder)
    runs = load_runs(folder)
    if not runs:
        return
    rows = [flat_row(r) for r in runs]
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    threads = folder_threads(folder)
    for row in rows:
        if row.get("torch_threads") is None and threads:
            row["torch_threads"] = threads
    agg = aggregate(rows)
    comparisons = comparisons_of(runs)
    devices = sorted({r["device"] for r in rows})
    (folder / "results.json").write_text(
        json.dumps({"runs": rows, "summary": agg, "comparisons": comparisons}, indent=2) + "\n"
    )
    (folder / "table.md").write_text(markdown(agg, comparisons, "/".join(d.upper() for d in devices)))
    try:
        plots(rows, agg, folder)
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -r benchmarks/requirements.txt)", file=sys.stderr)


def curves_plot(run_files: list[str], out: str) -> None:
    """Valid NDCG@10 against training seconds for the given runs (those that kept a ``valid_curve``).

    Args:
        run_files: run JSON files written by ``benchmarks/run.py``.
        out: the PNG to write.
    """
    series = []
    for path in run_files:
        run = json.loads(Path(path).read_text())
        label = f"{run['model']} ({run.get('train_mode') or 'prefixes'}, {run['dataset']}, seed {run['seed']})"
        series.append((label, run["timings"].get("valid_curve") or []))
    save_valid_curves(series, out, "validation score against training time")


def save_valid_curves(series: list[tuple[str, list[dict]]], out, title: str) -> None:
    """Draws valid-score curves (``valid_curve`` points: ``train_s``, ``valid_score``) on a log time axis.

    Args:
        series: (label, curve) pairs; empty curves are skipped.
        out: the PNG to write.
        title: the plot title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in series:
        if curve:
            ax.plot([c["train_s"] for c in curve], [c["valid_score"] for c in curve], marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (log)")
    ax.set_ylabel("valid NDCG@10")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--curves":  # report.py --curves out.png run.json ...
        curves_plot(sys.argv[3:], sys.argv[2])
    elif len(sys.argv) != 2 or not (Path(sys.argv[1]) / "runs").is_dir():
        sys.exit("usage: report.py <benchmark folder holding runs/> | report.py --curves out.png run.json ...")
    else:
        write_report(Path(sys.argv[1]))
