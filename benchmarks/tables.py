"""Writes every generated table and plot of README.md and docs/ from the results files.

Run: python benchmarks/tables.py            rewrite the blocks and the plots in docs/img/
     python benchmarks/tables.py --check    exit 1 when a block differs from what the results give

A block sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in README.md or a page of
docs/; nothing between the markers is typed by hand. Which runs make a row is said once, below
(``HEADLINE``, ``TRAINING``, ``FOLDERS``): to publish a new result, add its folder there and rerun.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import flat_row, load_run, ndcg10, paired_bootstrap, recall50, run_files, save_valid_curves  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMG = ROOT / "docs" / "img"
SEEDS = (2020, 2021, 2022)
DATASETS = {"ml-100k": "ml-100k", "amazon-beauty": "Amazon Beauty", "amazon-toys": "Amazon Toys"}

# (label, model, result folders): the headline rows, every model at its defaults, seeds 2020-2022
HEADLINE = {
    "ml-100k": [
        ("RimiRec", "RimiRec", ["ml-100k-cpu-rimirec-rebuild"]),
        ("SASRecAllPos", "SASRecAllPos", ["ml-100k-cpu-sasrec-shift"]),
        ("SASRec (RecBole, prefix rows)", "SASRec", ["ml-100k-cpu", "ml-100k-cpu-prefixes"]),
        ("GRU4Rec (RecBole)", "GRU4Rec", ["ml-100k-cpu"]),
        ("ComiRecDR", "ComiRecDR", ["ml-100k-cpu"]),
        ("ComiRecSA", "ComiRecSA", ["ml-100k-cpu"]),
        ("MIND", "MIND", ["ml-100k-cpu"]),
        ("MostPop", "MostPop", ["ml-100k-cpu"]),
    ],
    "amazon-beauty": [
        ("RimiRec", "RimiRec", ["amazon-beauty-cpu-rimirec-rebuild"]),
        ("SASRecAllPos (no shift)", "SASRecAllPos", ["amazon-beauty-cpu-batch350-packed"]),
        ("SASRec (RecBole, prefix rows)", "SASRec", ["amazon-beauty-cpu-prefixes"]),
        ("GRU4Rec (RecBole)", "GRU4Rec", ["amazon-beauty-cpu-gru4rec"]),
        ("ComiRecSA", "ComiRecSA", ["amazon-beauty-cpu"]),
        ("MIND", "MIND", ["amazon-beauty-cpu"]),
        ("ComiRecDR", "ComiRecDR", ["amazon-beauty-cpu"]),
        ("MostPop", "MostPop", ["amazon-beauty-cpu"]),
    ],
    "amazon-toys": [
        ("RimiRec", "RimiRec", ["amazon-toys-cpu-rimirec-rebuild"]),
        ("SASRecAllPos", "SASRecAllPos", ["amazon-toys-cpu"]),
        ("SASRec (RecBole, prefix rows)", "SASRec", ["amazon-toys-cpu-prefixes"]),
        ("GRU4Rec (RecBole)", "GRU4Rec", ["amazon-toys-cpu-gru4rec"]),
        ("ComiRecSA", "ComiRecSA", ["amazon-toys-cpu"]),
        ("MIND", "MIND", ["amazon-toys-cpu"]),
        ("ComiRecDR", "ComiRecDR", ["amazon-toys-cpu"]),
        ("MostPop", "MostPop", ["amazon-toys-cpu"]),
    ],
}
# leave-one-out rows shown only in docs/benchmarks.md's protocols table while their seeds come in; with all three
# they move to ``HEADLINE``
LOO_PENDING: dict = {}
# paired comparisons printed under each headline table: (label a, label b), a minus b
PAIRS = (
    ("RimiRec", "SASRecAllPos"),
    ("RimiRec", "SASRecAllPos (no shift)"),
    ("RimiRec", "SASRec (RecBole, prefix rows)"),
)

# docs/benchmarks.md: every model under both protocols. Leave-one-out is the headline rows (``HEADLINE``); ComiRec's
# protocol: (label, model, folders), as in ``HEADLINE``
COMIREC_MODELS = ["SASRecAllPos", "SASRec", "GRU4Rec", "ComiRecSA", "ComiRecDR", "MIND", "MostPop"]
COMIREC = {
    "ml-100k": [("RimiRec", "RimiRec", ["ml-100k-cpu-comirec-rebuild"])]
    + [(m, m, ["ml-100k-cpu-comirec"]) for m in COMIREC_MODELS],
    "amazon-beauty": [("RimiRec", "RimiRec", ["amazon-beauty-cpu-comirec-rebuild"])]
    + [(m, m, ["amazon-beauty-cpu-comirec"]) for m in COMIREC_MODELS],
    "amazon-toys": [("RimiRec", "RimiRec", ["amazon-toys-cpu-comirec-rebuild"])]
    + [(m, m, ["amazon-toys-cpu-comirec"]) for m in COMIREC_MODELS],
}
PROTOCOL_ROWS = {  # model -> its row label, in the tables' order
    "RimiRec": "RimiRec",
    "SASRecAllPos": "SASRecAllPos",
    "SASRec": "SASRec (RecBole, prefix rows)",
    "GRU4Rec": "GRU4Rec (RecBole)",
    **{m: m for m in ("ComiRecSA", "ComiRecDR", "MIND", "MostPop")},
}

# (data set, training rows, model, result folders): docs/training.md's table, every seed each folder holds
TRAINING = [
    ("ml-100k", "SASRec: prefix rows (RecBole)", "SASRec", ["ml-100k-cpu", "ml-100k-cpu-prefixes"]),
    ("ml-100k", "SASRecAllPos: windows", "SASRecAllPos", ["ml-100k-cpu-targets2048-packed"]),
    ("ml-100k", "SASRecAllPos: windows, shifted (default)", "SASRecAllPos", ["ml-100k-cpu-sasrec-shift"]),
    ("ml-100k", "RimiRec: prefix rows", "RimiRec", ["ml-100k-cpu-prefixes"]),
    ("ml-100k", "RimiRec: windows", "RimiRec", ["ml-100k-cpu-targets2048-packed"]),
    ("ml-100k", "RimiRec: windows, shifted", "RimiRec", ["ml-100k-cpu-rimirec-shift"]),
    ("ml-100k", "RimiRec: windows, stride 5 (default)", "RimiRec", ["ml-100k-cpu-rimirec-stride5"]),
    ("amazon-beauty", "SASRec: prefix rows (RecBole)", "SASRec", ["amazon-beauty-cpu-prefixes"]),
    ("amazon-beauty", "SASRecAllPos: windows", "SASRecAllPos", ["amazon-beauty-cpu-batch350-packed"]),
    ("amazon-beauty", "SASRecAllPos: windows, shifted (default)", "SASRecAllPos", ["amazon-beauty-cpu-shift"]),
    ("amazon-beauty", "RimiRec: prefix rows (2048 per step)", "RimiRec", ["amazon-beauty-cpu-rimirec-prefixes2048"]),
    (
        "amazon-beauty",
        "RimiRec: windows",
        "RimiRec",
        ["amazon-beauty-cpu-batch350-rimirec", "amazon-beauty-cpu-batch350-rimirec-packed"],
    ),
    ("amazon-beauty", "RimiRec: windows, shifted", "RimiRec", ["amazon-beauty-cpu-shift"]),
    ("amazon-beauty", "RimiRec: windows, stride 5 (default)", "RimiRec", ["amazon-beauty-cpu-rimirec-stride5"]),
]

# docs/rimirec.md's decomposition: (data set, rimirec_analysis.py output on the test split, SASRecAllPos folder)
ANALYSES = [
    ("ml-100k", "ml-100k-cpu-rimirec-stride5/rimirec_analysis.json", ["ml-100k-cpu-sasrec-shift"]),
    ("amazon-beauty", "amazon-beauty-cpu-rimirec-stride5/rimirec_analysis.json", ["amazon-beauty-cpu-batch350-packed"]),
    ("amazon-toys", "amazon-toys-cpu/rimirec_analysis.json", ["amazon-toys-cpu"]),
]

# docs/rimirec.md's decomposition at today's defaults: rimirec_analysis.py outputs on the test split, one per seed
# (``decomposition-test-seed<S>.json`` in the folder of the README's RimiRec row), against the README's SASRecAllPos
DEFAULTS_ANALYSIS = "decomposition-test-seed*.json"

# docs/benchmarks.md: every published folder's full report, and the paired comparisons
FOLDERS = [
    "ml-100k-cpu",
    "ml-100k-cpu-rimirec-stride5",
    "ml-100k-cpu-sasrec-shift",
    "ml-100k-cpu-prefixes",
    "ml-100k-cpu-targets2048-packed",
    "ml-100k-cpu-rimirec-shift",
    "amazon-beauty-cpu",
    "amazon-beauty-cpu-rimirec-stride5",
    "amazon-beauty-cpu-batch350-packed",
    "amazon-beauty-cpu-prefixes",
    "amazon-beauty-cpu-rimirec-prefixes2048",
    "amazon-beauty-cpu-batch350-rimirec",
    "amazon-beauty-cpu-batch350-rimirec-packed",
    "amazon-beauty-cpu-shift",
    "amazon-toys-cpu",
    "amazon-toys-cpu-prefixes",
    "ml-100k-cpu-rimirec-density",
    "ml-100k-cpu-rimirec-mixed",
    "amazon-beauty-cpu-rimirec-mixed",
    "amazon-toys-cpu-rimirec-mixed",
    "amazon-beauty-cpu-rimirec-density",
    "amazon-toys-cpu-rimirec-density",
    "ml-100k-cpu-rimirec-subclusters",
    "amazon-beauty-cpu-rimirec-subclusters",
    "amazon-toys-cpu-rimirec-subclusters",
    "amazon-beauty-cpu-rimirec-defaults",
    "amazon-toys-cpu-rimirec-defaults",
    "ml-100k-cpu-rimirec-defaults",
    "ml-100k-cpu-rimirec-pathloss2",
    "amazon-beauty-cpu-rimirec-pathloss2",
    "amazon-toys-cpu-rimirec-pathloss2",
    "ml-100k-cpu-rimirec-rebuild",
    "amazon-beauty-cpu-rimirec-rebuild",
    "amazon-toys-cpu-rimirec-rebuild",
    "ml-100k-cpu-comirec",
    "ml-100k-cpu-comirec-rebuild",
    "amazon-beauty-cpu-comirec",
    "amazon-toys-cpu-comirec",
    "amazon-beauty-cpu-comirec-rebuild",
    "amazon-toys-cpu-comirec-rebuild",
    "amazon-beauty-cpu-gru4rec",
    "amazon-toys-cpu-gru4rec",
]


def runs_of(model: str, folders: list[str], seeds=SEEDS) -> list[dict]:
    """The finished (not time-capped) runs of one model in some result folders.

    Args:
        model: the model name in the run files.
        folders: folder names under ``benchmarks/results``.
        seeds: the seeds to keep, or ``None`` for all.

    Returns:
        list[dict]: the runs, sorted by seed.
    """
    files = run_files([str(RESULTS / f) for f in folders if (RESULTS / f).is_dir()])
    found = [load_run(p) for p in files]
    found = [r for r in found if r["model"] == model and not r.get("time_capped")]
    return sorted((r for r in found if seeds is None or r["seed"] in seeds), key=lambda r: r["seed"])


def _mean(rows: list[dict], key: str, fmt: str = "{:.4f}", spread: bool = True) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return ""
    text = fmt.format(np.mean(values))
    return text + (f" ± {fmt.format(np.std(values))}" if spread and len(values) > 1 else "")


def headline(dataset: str) -> str:
    """One data set's headline table: every model at its defaults, seeds 2020-2022, and the paired lines.

    Args:
        dataset: a key of ``HEADLINE``.

    Returns:
        str: Markdown.
    """
    lines = [
        "| model | seeds | NDCG@10 | Recall@10 | Recall@50 | s to best valid | library scored |",
        "|---|---|---|---|---|---|---|",
    ]
    by_label = {}
    for label, model, folders in HEADLINE[dataset]:
        runs = runs_of(model, folders)
        if not runs:
            continue
        by_label[label] = runs
        rows = [flat_row(r) for r in runs]
        scored = _mean(rows, "library_fraction", "{:.0%}", spread=False) or "100%"
        cells = [label, str(len(rows)), _mean(rows, "ndcg@10"), _mean(rows, "recall@10"), _mean(rows, "recall@50")]
        lines.append("| " + " | ".join([*cells, _mean(rows, "time_to_best_s", "{:.0f}"), scored]) + " |")
    lines.append("")
    for a, b in PAIRS:
        if a in by_label and b in by_label:
            lines.append(paired_line(a, by_label[a], b, by_label[b]))
    return "\n".join(lines).rstrip() + "\n"


def paired_line(a: str, runs_a: list[dict], b: str, runs_b: list[dict]) -> str:
    """The paired test NDCG@10 difference of two rows, over the seeds both ran.

    Args:
        a: the first row's label.
        runs_a: its runs.
        b: the second row's label.
        runs_b: its runs.

    Returns:
        str: a Markdown bullet, ``a - b`` in NDCG@10 and Recall@50 with 95% bootstrap intervals over users.
    """
    seeds_b = {r["seed"]: r for r in runs_b}
    pairs = [(r, seeds_b[r["seed"]]) for r in runs_a if r["seed"] in seeds_b and r.get("test_ranks")]
    pairs = [(x, y) for x, y in pairs if y.get("test_ranks")]
    if not pairs:
        return ""
    ranks_a, ranks_b = [np.asarray(x["test_ranks"]) for x, _ in pairs], [np.asarray(y["test_ranks"]) for _, y in pairs]
    boot = paired_bootstrap(ranks_a, ranks_b)
    recall = paired_bootstrap(ranks_a, ranks_b, metric=recall50)
    seeds = ", ".join(str(x["seed"]) for x, _ in pairs)
    return (
        f"- {a} minus {b}, test, paired over users and seeds {seeds}: NDCG@10 {boot['mean']:+.4f} "
        f"({boot['low']:+.4f} to {boot['high']:+.4f}), Recall@50 {recall['mean']:+.4f} "
        f"({recall['low']:+.4f} to {recall['high']:+.4f}), 95% intervals"
    )


def protocols() -> str:
    """Every model under both protocols, one table each: mean test figures over the seeds run, or "not run".

    Returns:
        str: Markdown, two tables.
    """
    out = []
    for title, table, metrics, protocol in (
        (
            "Leave-one-out (RecBole's split), test NDCG@10 / Recall@50",
            {d: rows + LOO_PENDING.get(d, []) for d, rows in HEADLINE.items()},
            ("ndcg@10", "recall@50"),
            "leave_one_out",
        ),
        (
            "ComiRec's protocol (`--eval_protocol=comirec`), test NDCG@20 / Recall@50",
            COMIREC,
            ("ndcg@20", "recall@50"),
            "comirec",
        ),
    ):
        out += [f"{title}, mean over seeds 2020-2022 (the number of seeds in brackets):", ""]
        out += ["| model | " + " | ".join(DATASETS[d] for d in table) + " |", "|---|" + "---|" * len(table)]
        for name, label in PROTOCOL_ROWS.items():
            cells = []
            for rows in table.values():
                runs = next((runs_of(model, folders) for _, model, folders in rows if model == name), [])
                flat = [row for row in map(flat_row, runs) if row["eval_protocol"] == protocol]
                figures = " / ".join(_mean(flat, m, spread=False) for m in metrics)
                cells.append(f"{figures} ({len(flat)})" if flat else "not run")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def training() -> str:
    """docs/training.md's table: each training path's seeds, validation, test and time.

    Returns:
        str: Markdown.
    """
    lines = [
        "| data set | training rows | seeds | best valid NDCG@10 | test NDCG@10 | s/epoch | s to best valid |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, label, model, folders in TRAINING:
        rows = [flat_row(r) for r in runs_of(model, folders, seeds=None)]
        if rows:
            cells = [DATASETS[dataset], label, str(len(rows)), _mean(rows, "valid_ndcg@10"), _mean(rows, "ndcg@10")]
            cells += [_mean(rows, "s_per_epoch", "{:.1f}", spread=False), _mean(rows, "time_to_best_s", "{:.0f}")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def decomposition() -> str:
    """Where RimiRec's NDCG@10 goes, per data set, from ``benchmarks/rimirec_analysis.py`` (test split, one seed).

    Returns:
        str: Markdown: SASRecAllPos on the same seed, the global head, the ceiling (every leaf,
        factorised), the run's selection and each leaf rule at the same budget, with coverage.
    """
    lines = [
        "| data set | seed | SASRecAllPos | global head | every leaf, factorised | frontier 10% | leaves 10% "
        "| density 10% | held-out item in the frontier's 10% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, name, sasrec in ANALYSES:
        path = RESULTS / name
        if not path.exists():
            continue
        found = json.loads(path.read_text())
        parts, seed = found["decomposition"], found["seed"]
        bar = runs_of("SASRecAllPos", sasrec, seeds=(seed,))
        rule = {r["select_method"]: r for r in found["sweep"] if r.get("select_budget") == 0.1}
        cells = [DATASETS[dataset], str(seed), f"{bar[0]['test_result']['ndcg@10']:.4f}" if bar else ""]
        cells += [f"{parts[k]['ndcg@10']:.4f}" for k in ("global_head", "ceiling")]
        cells += [f"{rule[m]['ndcg@10']:.4f}" if m in rule else "" for m in ("frontier", "leaves", "density")]
        cells.append(f"{rule['frontier']['coverage']:.0%}" if "frontier" in rule else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paired(a: list[np.ndarray], b: list[np.ndarray], metric) -> str:
    boot = paired_bootstrap(a, b, metric=metric)
    return f"{boot['mean']:+.4f} ({boot['low']:+.4f} to {boot['high']:+.4f})"


def decomposition_defaults() -> str:
    """Where RimiRec's test figures go at today's defaults, per data set, over every seed analysed.

    Reads the README's RimiRec folder's ``decomposition-test-seed*.json`` (``rimirec_analysis.py``, which keeps
    each user's rank) and the README's SASRecAllPos runs of the same seeds.

    Returns:
        str: Markdown, one row per data set and metric (NDCG@10, Recall@50): SASRecAllPos, the global head
        over the whole library, every leaf under the merged score (the ceiling), the defaults' 10%, coverage,
        and two paired differences over users and seeds: the selection's cost (10% minus every leaf) and
        the model's (every leaf minus SASRecAllPos).
    """
    lines = [
        "| data set | metric | seeds | SASRecAllPos | global head, whole library | every leaf, merged score "
        "| defaults: 10% of the library | held-out item in the 10% | the selection's cost (10% minus every leaf) "
        "| the model's (every leaf minus SASRecAllPos) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, rows in HEADLINE.items():
        folders = {label: folders for label, _, folders in rows}
        rimirec = [f for f in folders["RimiRec"] if (RESULTS / f).is_dir()]
        found = sorted(
            (json.loads(p.read_text()) for f in rimirec for p in (RESULTS / f).glob(DEFAULTS_ANALYSIS)),
            key=lambda r: r["seed"],
        )
        bar = {r["seed"]: r for _, model, f in rows if model == "SASRecAllPos" for r in runs_of(model, f)}
        found = [r for r in found if r["seed"] in bar and bar[r["seed"]].get("test_ranks")]
        if not found:
            continue
        own = {r["seed"]: r.get("test_ranks") for r in runs_of("RimiRec", rimirec)}
        for r in found:  # the analysed checkpoint must be the README row's run: its selection gives the run's ranks
            if own.get(r["seed"]) != r["decomposition"]["selection"]["ranks"]:
                raise ValueError(f"{dataset} seed {r['seed']}: {DEFAULTS_ANALYSIS} is not the README run's checkpoint")
        ranks = {k: [np.asarray(r["decomposition"][k]["ranks"]) for r in found] for k in ("ceiling", "selection")}
        sasrec = [np.asarray(bar[r["seed"]]["test_ranks"]) for r in found]
        seeds = ", ".join(str(r["seed"]) for r in found)
        for metric, key, fn in (("NDCG@10", "ndcg@10", ndcg10), ("Recall@50", "recall@50", recall50)):
            cells = [DATASETS[dataset], metric, seeds]
            cells.append(f"{np.mean([bar[r['seed']]['test_result'][key] for r in found]):.4f}")
            parts = ("global_head", "ceiling", "selection")
            cells += [f"{np.mean([r['decomposition'][k][key] for r in found]):.4f}" for k in parts]
            cells.append(f"{np.mean([r['decomposition']['selection']['coverage'] for r in found]):.0%}")
            cells.append(_paired(ranks["selection"], ranks["ceiling"], fn))
            cells.append(_paired(ranks["ceiling"], sasrec, fn))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def command_line(argv: list[str]) -> str:
    """One recorded command as a bullet a user can run.

    A run continued from a checkpoint (``--set resume_from=...``) is shown without it, since
    checkpoints are not committed: run whole, the command gives the same result (resuming is exact).

    Args:
        argv: the command line as ``run.py`` recorded it in meta.json.

    Returns:
        str: a Markdown bullet.
    """
    shown, resumed, i = [], False, 0
    while i < len(argv):
        if argv[i] == "--set":
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                if argv[i].startswith("resume_from="):
                    resumed = True
                else:
                    values.append(argv[i])
                i += 1
            shown += ["--set", *values] if values else []
            continue
        shown.append(argv[i])
        i += 1
    if shown and not shown[0].startswith("benchmarks/"):
        shown[0] = "benchmarks/" + Path(shown[0]).name  # recorded as started, shown from the repository root
    shown = [re.sub(r"^(--out=?)?results/", r"\1benchmarks/results/", a) for a in shown]
    note = " (continued from an earlier run's checkpoint)" if resumed else ""
    return f"- `python {' '.join(shown)}`{note}"


def folder_block(name: str) -> str:
    """A results folder's full report for docs/benchmarks.md: its commands, tables and plots.

    Args:
        name: a folder under ``benchmarks/results``.

    Returns:
        str: Markdown, with links relative to docs/.
    """
    folder = RESULTS / name
    if not (folder / "table.md").exists():
        return ""
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    lines = [f"### `benchmarks/results/{name}`", ""]
    lines += [meta["note"], ""] if meta.get("note") else []  # e.g. a default that has changed since
    lines += [command_line(argv) for argv in meta.get("commands", [])]
    threads = sorted({r["torch_threads"] for r in map(load_run, run_files([str(folder)])) if r.get("torch_threads")})
    lines += ["", f"Machine: {meta.get('cpu_count')} cores ({meta.get('machine')}), CPU only."]
    lines += [f"Torch threads per run (where recorded): {', '.join(map(str, threads))}." if threads else "", ""]
    lines += [(folder / "table.md").read_text().strip(), ""]
    if (folder / "ann_eval.md").exists():
        lines += [(folder / "ann_eval.md").read_text().strip(), ""]
    lines += [f"![{png.stem}](../benchmarks/results/{name}/{png.name})" for png in sorted(folder.glob("*.png"))]
    return "\n".join(lines).rstrip() + "\n"


def comparisons() -> str:
    """Every paired comparison file (``benchmarks/compare_runs.py --out``) as one line.

    Returns:
        str: Markdown bullets.
    """
    lines = []
    for path in sorted(RESULTS.glob("*-vs-*.json")):
        data = json.loads(path.read_text())
        model, dataset = data["model_dataset"]
        boot = data["bootstrap"]
        b_model = data.get("model_b", model)
        paired = data["per_seed"]  # the means over the paired seeds: a side may hold seeds the other lacks
        b_mean, a_mean = (sum(row[f"{side}_test"] for row in paired) / len(paired) for side in "ba")
        lines.append(
            f"- `{path.name}`: {dataset}, B ({b_model}) minus A ({model}), test NDCG@10 "
            f"{b_mean:.4f} against {a_mean:.4f}, paired over seeds "
            f"{', '.join(map(str, data['paired_seeds']))}: {boot['mean']:+.4f} "
            f"(95% interval {boot['low']:+.4f} to {boot['high']:+.4f})"
        )
        recall = data.get("bootstrap_recall@50")  # comparisons written since compare_runs bootstraps it
        if recall:
            lines[-1] += f"; Recall@50 {recall['mean']:+.4f} ({recall['low']:+.4f} to {recall['high']:+.4f})"
    return "\n".join(lines) + "\n"


def scale() -> str:
    """The serving-cost table of ``benchmarks/scale.py``.

    Returns:
        str: Markdown.
    """
    data = json.loads((RESULTS / "scale-cpu.json").read_text())
    lines = [
        "| items x 64 | tree build s | index build s | index memory / raw | per-category q/s | full scan q/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['items']:,} | {r['tree_build_s']:.1f} | {r['index_build_s']:.2f} | {r['index_over_raw']:.2f} "
            f"| {r['per_category_qps']:.0f} | {r['full_scan_qps']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def blocks() -> dict[str, str]:
    """Every generated block by name."""
    found = {f"headline:{d}": headline(d) for d in HEADLINE}
    found["training"] = training()
    found["decomposition"] = decomposition()
    found["decomposition-defaults"] = decomposition_defaults()
    found["folders"] = "\n".join(b for b in map(folder_block, FOLDERS) if b)
    found["comparisons"] = comparisons()
    found["scale"] = scale()
    found["protocols"] = protocols()
    return found


def plots() -> None:
    """docs/img: time to best per headline model, and valid curves of the training paths (seed 2020)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    shown = [d for d in HEADLINE if any(runs_of(m, f) for _, m, f in HEADLINE[d])]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 3.8))
    for ax, dataset in zip(np.atleast_1d(axes), shown, strict=True):
        bars = []
        for label, model, folders in HEADLINE[dataset]:
            rows = [flat_row(r) for r in runs_of(model, folders)]
            if rows and model != "MostPop":
                bars.append(
                    (label, np.mean([r["time_to_best_s"] for r in rows]), np.mean([r["ndcg@10"] for r in rows]))
                )
        ax.barh([b[0] for b in bars], [b[1] for b in bars], color="#4c72b0")
        for y, (_, seconds, ndcg) in enumerate(bars):
            ax.text(seconds, y, f" {seconds:.0f} s, NDCG@10 {ndcg:.4f}", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("training seconds to the best validation (log)")
        ax.set_title(DATASETS[dataset], fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(right=ax.get_xlim()[1] * 40)
    fig.suptitle("Mean over seeds 2020-2022, 2-core CPU (threads per run: docs/benchmarks.md)", fontsize=9)
    fig.tight_layout()
    fig.savefig(IMG / "time_to_best.png", dpi=110)
    plt.close(fig)
    for dataset in {d for d, *_ in TRAINING}:
        series = []
        for d, label, model, folders in TRAINING:
            runs = runs_of(model, folders, seeds=(2020,)) if d == dataset else []
            if runs:
                series.append((label, runs[0]["timings"].get("valid_curve") or []))
        save_valid_curves(
            series, IMG / f"curves_{dataset}.png", f"{DATASETS[dataset]}: validation while training (seed 2020)"
        )


def rewrite(text: str, found: dict[str, str]) -> str:
    """Replaces every ``<!-- table:NAME -->`` block of a page by its generated text.

    Args:
        text: a Markdown page.
        found: block name -> text.

    Returns:
        str: the page with its blocks regenerated.

    Raises:
        KeyError: for a block name this script does not make.
    """

    def one(match: re.Match) -> str:
        name = match.group(1)
        return f"<!-- table:{name} -->\n{found[name]}<!-- /table:{name} -->"

    return re.sub(r"<!-- table:([\w:-]+) -->\n.*?<!-- /table:\1 -->", one, text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the pages are up to date")
    args = parser.parse_args(argv)
    found = blocks()
    stale = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        try:
            new = rewrite(text, found)
        except KeyError as err:
            print(f"error: {page.relative_to(ROOT)}: no block named {err}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run python benchmarks/tables.py)", file=sys.stderr)
        return 1 if stale else 0
    plots()
    return 0


if __name__ == "__main__":
    sys.exit(main())
