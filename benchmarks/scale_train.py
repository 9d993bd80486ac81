"""Training and evaluation at scale on synthetic libraries with a planted hierarchy (issue: a million items).

For each library size, ``benchmarks/synthetic.py`` writes a library (``--users`` users, about
``--interactions`` interactions, the planted circles in ``<name>.item``) unless it is there already;
then each model trains for ``--epochs`` epochs in a fresh process (so its peak memory is its own)
with the losses that scale (sampled global softmax, bounded within-node softmax) and is tested with
the metrics computed from its retrieved lists (no dense users x items matrix). One JSON row per run:
``model``, ``n_items``, ``n_users``, ``n_interactions``, ``epoch_s``, ``peak_memory_gb``,
``eval_ms_per_user``, ``recall@50``, ``tree_ari`` (RimiRec: its level-1 circles against the planted
circles; ``tree_ari_seen`` over the items that occur in the interactions), ``device``.

Example:
    python benchmarks/scale_train.py --sizes 100000 1000000 --data_path <scratch folder> \\
        --out benchmarks/results/scale-train-cpu.jsonl
    python benchmarks/scale_train.py --out benchmarks/results/scale-train-cpu.jsonl --plot docs/img/scale-train-cpu.png

``--set key=value`` adds config keys to every run (recorded in the row's ``settings``), e.g.
``--set all_positions_stride=None``, or RimiRec's budgets in items rather than fractions of the library
(``--set select_budget=10000 subcluster_pool=100000``: what a user searches stays put as the library grows).
``--note`` records the run's conditions (another run beside it: its seconds are inflated; the plot
draws such rows as their own curve). ``--allocator <libtcmalloc_minimal.so.4>`` preloads a memory
allocator into each run (recorded as ``allocator``; docs/benchmarks.md "Training at scale": glibc's
malloc returns large blocks to the system, and the page faults of the next allocation then cost more
than the arithmetic of a CPU step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = {  # the settings that scale, per model
    "RimiRec": {"global_negatives": 4096, "tower_negatives": 256, "select_budget": 0.01, "eval_from_lists": True},
    "SASRecAllPos": {"global_negatives": 4096, "retrieval": "faiss", "eval_from_lists": True},
    "ComiRecSA": {"loss_type": "SSM", "retrieval": "faiss", "eval_from_lists": True},
}


def recbole_tokens(folder: str, name: str) -> tuple[np.ndarray, int]:
    """RecBole's item tokens by id (its remap: first appearance in ``.inter``, then ``.item``; id 0 is padding).

    Returns:
        tuple: the tokens by id, and how many items occur in ``.inter`` (ids 1 to that number).
    """
    import pandas as pd

    inter = pd.read_csv(os.path.join(folder, f"{name}.inter"), sep="\t", usecols=[1], dtype=str).iloc[:, 0]
    item = pd.read_csv(os.path.join(folder, f"{name}.item"), sep="\t", usecols=[0], dtype=str).iloc[:, 0]
    _, uniques = pd.factorize(pd.concat([inter, item], ignore_index=True))
    return np.r_[["[PAD]"], np.asarray(uniques, dtype=str)], int(inter.nunique())


def tree_ari(checkpoint: str, folder: str, name: str) -> dict[str, float]:
    """ARI of a saved RimiRec tree's level-1 nodes against the planted circles.

    Returns:
        dict: ``tree_ari`` over every item, ``tree_ari_seen`` over the items that occur in the
        interactions (items never seen have no co-occurrence and share one node of the tree).
    """
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    from recbole_rimirec.checkpoint import load_checkpoint

    codes = load_checkpoint(checkpoint)["state_dict"]["tree.codes"].numpy()  # [n_items, D] by RecBole id
    tokens, seen = recbole_tokens(folder, name)
    planted = pd.read_csv(os.path.join(folder, f"{name}.item"), sep="\t", dtype=str)
    circle = dict(zip(planted.iloc[:, 0], planted.iloc[:, 1], strict=True))
    labels = np.array([circle.get(t, "") for t in tokens[1:]])
    return {
        "tree_ari": float(adjusted_rand_score(labels, codes[1:, 0])),
        "tree_ari_seen": float(adjusted_rand_score(labels[:seen], codes[1 : 1 + seen, 0])),
    }


def one_run(model: str, name: str, data_path: str, epochs: int, seed: int, extra: dict | None = None) -> dict:
    """Trains and tests one model in this process; the row without its peak memory.

    Args:
        model: a key of ``MODELS``.
        name: the library's data set name.
        data_path: the folder holding it.
        epochs: epochs to train.
        seed: the run's seed.
        extra: config keys over the model's scale settings (``--set``), recorded in the row's ``settings``.

    Returns:
        dict: the row's measured fields.
    """
    import torch

    from recbole_rimirec.quick_start import run

    config = {
        "data_path": data_path,
        "epochs": epochs,
        "seed": seed,
        "show_progress": False,
        "state": "WARNING",
        "checkpoint_dir": os.path.join(data_path, "checkpoints"),
        "eval_batch_size": 512,
        **MODELS[model],
        **(extra or {}),
    }
    result = run(model, name, config_dict=config)
    timings = result["timings"]
    users = len(result.get("test_ranks") or []) or 1
    row = {
        "model": model,
        "epoch_s": float(np.mean(timings["epoch_s"])) if timings["epoch_s"] else None,
        "data_s": timings["data_s"],  # loading, prefix rows, split and (RimiRec) the tree
        "eval_ms_per_user": 1000.0 * timings["eval_s"] / users,  # everything the test took, the index included
        "retrieval_ms_per_user": result.get("retrieval_ms_per_user"),  # the per-user search alone (RimiRec, ComiRecSA)
        "index_s": result.get("index_s"),  # building the index once (k-means sub-clusters, Faiss)
        "recall@50": result["test_result"]["recall@50"],
        "tree_ari": None,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),  # torch's CPU threads (OMP_NUM_THREADS)
        "settings": {**MODELS[model], **(extra or {})},
    }
    if model == "RimiRec" and result.get("checkpoint"):
        row.update(tree_ari(result["checkpoint"], os.path.join(data_path, name), name))
    return row


def append_row(path: str, row: dict) -> None:
    """Appends one JSON row to a JSON-lines results file and prints it.

    Args:
        path: the results file.
        row: the run's figures.
    """
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


def curve_label(row: dict) -> str:
    """A row's curve: its model, interactions, any setting beyond or missing from the model's scale settings,
    allocator and note (rows made before a scale setting existed keep their own curve)."""
    settings = row.get("settings", {})
    extra = {k: v for k, v in settings.items() if MODELS.get(row["model"], {}).get(k, object()) != v}
    extra.update({k: "default" for k in MODELS.get(row["model"], {}) if k not in settings})
    label = f"{row['model']}, {row['n_interactions'] / 1e6:.0f}M interactions"
    label += "".join(f", {k}={v}" for k, v in sorted(extra.items()))
    if row.get("threads", 1) != 1:
        label += f", {row['threads']} threads"
    if row.get("allocator", "glibc") != "glibc":
        label += f", {row['allocator'].split('.so')[0].removeprefix('lib')}"
    return label + (f" [{row['note']}]" if row.get("note") else "")


def plot_rows(rows_path: str, out: str) -> None:
    """Cost against library size: epoch time, peak memory and evaluation time per user, one curve per setting.

    Args:
        rows_path: the JSON-lines rows of this benchmark.
        out: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(rows_path).read_text().splitlines() if line.strip()]
    curves: dict[str, dict[int, dict]] = {}
    for row in rows:  # the latest row of a setting at a size
        curves.setdefault(curve_label(row), {})[row["n_items"]] = row
    panels = (
        ("epoch_s", "s per epoch"),
        ("peak_memory_gb", "peak memory, GB"),
        ("eval_ms_per_user", "ms per test user"),
    )
    legend_in = 0.14 * len(curves) + 0.5  # inches below the panels: one column of labels (long ones)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2 + legend_in))
    markers = "osD^v<>px*h"
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, (label, by_size) in enumerate(sorted(curves.items())):
            sizes = sorted(n for n in by_size if by_size[n].get(key) is not None)
            ax.plot(
                sizes,
                [by_size[n][key] for n in sizes],
                marker=markers[i % len(markers)],
                color=plt.cm.tab20(i % 20),
                label=label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items in the library")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (4.2 + legend_in), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--data_path", help="where the synthetic libraries are written (large); needed unless --plot")
    parser.add_argument("--out", required=True, help="JSON lines, one row per run (appended)")
    parser.add_argument("--plot", metavar="PNG", help="only draw the rows of --out against library size into PNG")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config for every run")
    parser.add_argument("--allocator", metavar="LIB", help="a malloc library preloaded into each run (LD_PRELOAD)")
    parser.add_argument("--note", help="conditions of these runs (e.g. 'beside one other run'), kept in each row")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from run import parse_value

    extra = {key: parse_value(value) for key, _, value in (item.partition("=") for item in args.set)}
    if args.plot:
        plot_rows(args.out, args.plot)
        return 0
    if not args.data_path:
        parser.error("--data_path is needed (where the synthetic libraries are written)")
    if args.one:  # the child: one run, its row on stdout's last line
        row = one_run(args.one[0], args.one[1], args.data_path, args.epochs, args.seed, extra)
        row["peak_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(row))
        return 0
    if args.allocator and not os.path.isfile(args.allocator):
        parser.error(f"--allocator: no file {args.allocator}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"LD_PRELOAD": args.allocator} if args.allocator else {})}
    import synthetic

    for n in args.sizes:
        name = f"synthetic-{n}"
        if not os.path.isfile(os.path.join(args.data_path, name, f"{name}.inter")):
            synthetic.generate(args.data_path, name, n, args.users, args.interactions, seed=args.seed)
        lines = sum(1 for _ in open(os.path.join(args.data_path, name, f"{name}.inter"))) - 1
        for model in args.models:
            command = [sys.executable, __file__, "--one", model, name, "--data_path", args.data_path]
            command += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--out", args.out]
            command += ["--set", *args.set] if args.set else []
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"{model} at {n} items failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(n_items=n, n_users=args.users, n_interactions=lines)
            row["allocator"] = os.path.basename(args.allocator) if args.allocator else "glibc"
            row.update({"note": args.note} if args.note else {})
            append_row(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
