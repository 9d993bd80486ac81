"""Two sets of runs on one data set, paired by seed: is B better than A, or luckier?

For a training option whose effect is smaller than the seeds' spread (``all_positions_shift``, say):
run both settings on the same seeds, then

    python benchmarks/compare_runs.py --model RimiRec --a FIXED_RUNS --b SHIFTED_RUNS [--out f.json]

(runs: run JSON files or benchmark folders; each side holds one model, and the two may differ, to pair
two models trained on the same seeds). It prints, per seed, each side's test and best valid NDCG@10; the
paired bootstrap over users of test NDCG@10, B minus A, over the seeds both ran
(``report.paired_bootstrap``; under ComiRec's protocol NDCG@20 and Recall@50 over each user's targets);
and, per side, how the validation curve moves: the mean absolute change of valid NDCG@10 from one
validation to the next and the curve's median, both from the 10th validation on. Early stopping keeps a
curve's best point, and the best of a noisier curve is higher with no better model behind it: a gain in
best valid that the median does not share is suspect.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from report import PROTOCOLS, load_run, paired_bootstrap, protocol_of_run, recall50, run_files, user_values

FROM_VALIDATION = 10  # curves are read from this validation on (1-based), past the first climb


def curve_stats(run: dict) -> dict:
    """How a run's validation curve moves once past its first climb.

    Args:
        run: a run result with ``timings.valid_curve``.

    Returns:
        dict: ``mean_abs_step`` and ``median`` of valid NDCG@10 from the 10th validation on (``None``
        when the curve is shorter than 11 points).
    """
    scores = np.array([p["valid_score"] for p in run["timings"].get("valid_curve") or []])[FROM_VALIDATION - 1 :]
    if len(scores) < 2:
        return {"mean_abs_step": None, "median": None}
    return {"mean_abs_step": float(np.abs(np.diff(scores)).mean()), "median": float(np.median(scores))}


def side(runs: list[dict]) -> dict:
    """Means over one side's seeds.

    Args:
        runs: one side's runs.

    Returns:
        dict: seeds, mean test and best valid NDCG@10, mean curve statistics (over runs that have them).
    """
    stats = [curve_stats(r) for r in runs]
    out = {
        "seeds": [r["seed"] for r in runs],
        "test_ndcg@10": float(np.mean([r["test_result"]["ndcg@10"] for r in runs])),
        "best_valid_ndcg@10": float(np.mean([r["best_valid_result"]["ndcg@10"] for r in runs])),
    }
    for key in ("mean_abs_step", "median"):
        values = [s[key] for s in stats if s[key] is not None]
        out[f"valid_{key}"] = float(np.mean(values)) if values else None
    return out


def compare(a: list[dict], b: list[dict]) -> dict:
    """Side A against side B, paired by seed.

    Args:
        a: runs of the first setting.
        b: runs of the second, same data set (usually the same model).

    Returns:
        dict: ``a`` and ``b`` (see :func:`side`), ``per_seed`` rows, and ``bootstrap`` (B minus A test
        NDCG@10 over users and the seeds both ran, with ``paired_seeds``) and ``bootstrap_recall@50`` (the
        same for Recall@50) where both kept test ranks. Under ComiRec's protocol (every run with
        ``eval_protocol: comirec``) the bootstraps are ``bootstrap_ndcg@20`` and ``bootstrap_recall@50``, over
        each user's values from ``test_hits`` (``report.user_values``), and ``eval_protocol`` is set.
    """
    by_a, by_b = {r["seed"]: r for r in a}, {r["seed"]: r for r in b}
    common = sorted(set(by_a) & set(by_b))
    out = {"a": side(a), "b": side(b), "per_seed": []}
    for seed in common:
        out["per_seed"].append(
            {
                "seed": seed,
                **{
                    f"{name}_{metric}": run[result]["ndcg@10"]
                    for name, run in (("a", by_a[seed]), ("b", by_b[seed]))
                    for metric, result in (("test", "test_result"), ("best_valid", "best_valid_result"))
                },
            }
        )
    if {protocol_of_run(r) for r in a + b} == {"comirec"}:  # several targets a user: per-user values from test_hits
        held = [s for s in common if by_a[s].get("test_hits") and by_b[s].get("test_hits")]
        if held:
            out["eval_protocol"], out["paired_seeds"] = "comirec", held
            for metric in PROTOCOLS["comirec"][1]:
                a_values = [user_values(by_a[s], metric) for s in held]  # per seed: [U] in the split's user order
                b_values = [user_values(by_b[s], metric) for s in held]
                out[f"bootstrap_{metric}"] = paired_bootstrap(b_values, a_values, metric=lambda v: v)
        return out
    ranked = [s for s in common if "test_ranks" in by_a[s] and "test_ranks" in by_b[s]]
    if ranked:
        out["paired_seeds"] = ranked
        b_ranks = [np.array(by_b[s]["test_ranks"]) for s in ranked]
        a_ranks = [np.array(by_a[s]["test_ranks"]) for s in ranked]
        out["bootstrap"] = paired_bootstrap(b_ranks, a_ranks)
        out["bootstrap_recall@50"] = paired_bootstrap(b_ranks, a_ranks, metric=recall50)
    return out


def _select(paths: list[str], model: str | None, dataset: str | None) -> list[dict]:
    runs = [load_run(f) for f in run_files(paths)]
    return [r for r in runs if (model is None or r["model"] == model) and (dataset is None or r["dataset"] == dataset)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, help="run files or folders of the first setting")
    parser.add_argument("--b", nargs="+", required=True, help="run files or folders of the second setting")
    parser.add_argument("--model", help="keep only this model's runs")
    parser.add_argument("--dataset", help="keep only this data set's runs")
    parser.add_argument("--out", help="also write the comparison here as JSON")
    args = parser.parse_args(argv)
    try:
        a, b = _select(args.a, args.model, args.dataset), _select(args.b, args.model, args.dataset)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    models = [{r["model"] for r in side} for side in (a, b)]
    datasets = {r["dataset"] for r in a + b}
    if not a or not b or any(len(m) != 1 for m in models) or len(datasets) != 1:
        kinds = [sorted({f"{r['model']} on {r['dataset']}" for r in side}) for side in (a, b)]
        found = " / ".join(f"{name}: {', '.join(k) or 'none'}" for name, k in zip("AB", kinds, strict=True))
        print(
            f"error: each side needs runs of one model, both on one data set ({found}); use --model/--dataset",
            file=sys.stderr,
        )
        return 2
    for seeds in ([r["seed"] for r in a], [r["seed"] for r in b]):
        if len(set(seeds)) != len(seeds):
            print(f"error: a side holds two runs of one seed ({sorted(seeds)})", file=sys.stderr)
            return 2
    protocols = {protocol_of_run(r) for r in a + b}
    if len(protocols) > 1:
        print(f"error: the runs mix evaluation protocols ({', '.join(sorted(protocols))})", file=sys.stderr)
        return 2
    (model_a,), (model_b,) = models
    result = {"model_dataset": [model_a, datasets.pop()], "argv": sys.argv, **compare(a, b)}
    if model_b != model_a:
        result["model_b"] = model_b  # two models on the same seeds and split
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
