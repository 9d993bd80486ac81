"""RimiRec analysis from a saved run: library-budget sweep and generator accuracy.

* Budget sweep: the same trained weights evaluated on the test split at several
  ``select_budget`` values (best-first frontier, Faiss and exact search) and beam sizes (beam):
  NDCG@10 / Recall@10 against the fraction of the library scored (a curve, not one point), plus
  retrieval time per user.
* Generator accuracy: for each test user, is the held-out item's node at each tree level among
  the top-B nodes of that level by P(node | user)? B = 1, 5, 10, against the B most popular nodes
  of the level (by training interactions).

Run: python benchmarks/rimirec_analysis.py <checkpoint.pth> --out benchmarks/results/<name>/rimirec_analysis.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


def generator_accuracy(checkpoint: str, bs=(1, 5, 10)) -> dict:
    from recbole_rimirec.checkpoint import load_checkpoint
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.loaders import train_sequences
    from recbole_rimirec.data.preparation import create_dataset, data_preparation

    state = load_checkpoint(checkpoint)
    settings = {k: v for k, v in state["external_config"].items() if k not in ("model", "dataset")}
    settings.update({"state": "WARNING", "show_progress": False})
    config = Config(state["config"]["model"], state["config"]["dataset"], config_dict=settings)
    train, _, test = data_preparation(config, create_dataset(config))
    net = config.model_class(config, train._dataset)
    net.load_state_dict(state["state_dict"])
    net.eval()
    tree = net.tree
    _, flat, _ = train_sequences(train._dataset)
    codes_train = tree.codes[torch.from_numpy(flat)]  # [T, D]
    out = {}
    for level in range(1, tree.max_depth + 1):
        nodes = tree.level(level)
        counts = torch.bincount(codes_train[:, level - 1], minlength=tree.num_nodes)[nodes]
        hits = {b: 0 for b in bs}
        pop_hits = {b: 0 for b in bs}
        total = 0
        for batch in test:
            inter = batch[0]
            with torch.no_grad():
                lp = net.generator(net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN]))[:, nodes]
            target = tree.codes[inter[net.ITEM_ID], level - 1]  # [U]; 0 when the path is shorter
            keep = target > 0
            target, lp = target[keep], lp[keep]
            total += len(target)
            for b in bs:
                kb = min(b, len(nodes))
                top = nodes[lp.topk(kb, dim=1).indices]
                hits[b] += int((top == target[:, None]).any(1).sum())
                pop = nodes[counts.topk(kb).indices]
                pop_hits[b] += int(torch.isin(target, pop).sum())
        out[f"level_{level}"] = {
            "nodes": len(nodes),
            "users": total,
            **{f"generator@{b}": hits[b] / max(total, 1) for b in bs},
            **{f"popular@{b}": pop_hits[b] / max(total, 1) for b in bs},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budgets", nargs="+", type=float, default=BUDGETS)
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 2, 5, 10, 20])
    parser.add_argument("--backends", nargs="+", default=["faiss", "exact"], choices=["faiss", "exact"])
    args = parser.parse_args()
    from recbole_rimirec.quick_start import evaluate_saved

    quiet = {"state": "WARNING", "show_progress": False}
    sweep = []
    for backend in args.backends:
        for budget in args.budgets:
            r = evaluate_saved(args.checkpoint, {**quiet, "select_budget": budget, "retrieval": backend})
            row = {
                "retrieval": backend,
                "select_method": "frontier",
                "select_budget": budget,
                **{k: r[k] for k in r if k != "result"},
            }
            row.update({m: r["result"][m] for m in ("ndcg@10", "recall@10", "recall@50")})
            sweep.append(row)
            print(json.dumps(row), flush=True)
    for beam in args.beams:  # the alternative selection, at comparable library fractions
        r = evaluate_saved(args.checkpoint, {**quiet, "select_method": "beam", "beam_size": beam, "retrieval": "faiss"})
        row = {
            "retrieval": "faiss",
            "select_method": "beam",
            "beam_size": beam,
            **{k: r[k] for k in r if k != "result"},
        }
        row.update({m: r["result"][m] for m in ("ndcg@10", "recall@10", "recall@50")})
        sweep.append(row)
        print(json.dumps(row), flush=True)
    plain = evaluate_saved(
        args.checkpoint,
        {**quiet, "select_budget": 1.0, "retrieval": "exact", "alpha": 0.0, "retrieval_score": "global"},
    )["result"]
    result = {
        "checkpoint": args.checkpoint,
        "budget_sweep": sweep,
        "encoder_full_ranking": plain,
        "generator_accuracy": generator_accuracy(args.checkpoint),
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        curves = [("frontier", "faiss"), ("frontier", "exact"), ("beam", "faiss")]
        for method, backend in curves:
            rows = [r for r in sweep if r["retrieval"] == backend and r["select_method"] == method]
            xs, ys = [r["library_fraction"] for r in rows], [r["ndcg@10"] for r in rows]
            ax.plot(xs, ys, marker="o", label=f"{method}, {backend}")
        ax.axhline(plain["ndcg@10"], color="gray", linestyle="--", label="encoder, full ranking (global head)")
        ax.set_xscale("log")
        ax.set_xlabel("fraction of the library scored per user")
        ax.set_ylabel("test NDCG@10")
        ax.legend()
        ax.set_title("RimiRec: NDCG@10 against the library budget")
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=110)
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
