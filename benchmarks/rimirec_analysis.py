"""RimiRec analysis from a saved run: library-budget sweep and generator accuracy.

* Budget sweep: the same trained weights evaluated on the test split at several
  ``select_budget`` values (best-first frontier, Faiss and exact search) and beam sizes (beam):
  NDCG@10 / Recall@10 against the fraction of the library scored (a curve, not one point), plus
  retrieval time per user.
* Generator accuracy: for each test user, is the held-out item's node at each tree level among
  the top-B nodes of that level by P(node | user)? B = 1, 5, 10, against the B most popular nodes
  of the level (by training interactions).
* Selection coverage: for each selection setting of the sweep, how often the selected nodes hold
  the held-out item at all (the ceiling of the restricted retrieval's recall).

Run: python benchmarks/rimirec_analysis.py <checkpoint.pth> --out benchmarks/results/<name>/rimirec_analysis.json
(``--generator_only`` recomputes the last two into an existing JSON without the evaluation sweep)
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


def test_log_probs(checkpoint: str):
    """P(node | user) of every test user, from the run's own data split and weights.

    Args:
        checkpoint: a RimiRec checkpoint.

    Returns:
        (log_p, target, tree, train_codes): [U, N] log P(node | user), [U] test target ids, the
        model's :class:`TreeTensors`, [T, D] codes of every training interaction's item.
    """
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
    log_p, target = [], []
    with torch.no_grad():
        for batch in test:
            inter = batch[0]
            log_p.append(net.generator(net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN])))
            target.append(inter[net.ITEM_ID])
    _, flat, _ = train_sequences(train._dataset)
    return torch.cat(log_p), torch.cat(target), net.tree, net.tree.codes[torch.from_numpy(flat)]


def generator_accuracy(log_p, target, tree, train_codes, bs=(1, 5, 10)) -> dict:
    """Per tree level: is the target's node among the generator's top B, against the B most popular?

    Args:
        log_p: [U, N] log P(node | user).
        target: [U] target item ids.
        tree: the model's :class:`TreeTensors`.
        train_codes: [T, D] codes of the training interactions (node popularity).
        bs: the B values.

    Returns:
        dict: ``level_<l>`` -> nodes, users, ``generator@B`` and ``popular@B`` hit rates.
    """
    out = {}
    for level in range(1, tree.max_depth + 1):
        nodes = tree.level(level)
        counts = torch.bincount(train_codes[:, level - 1], minlength=tree.num_nodes)[nodes]
        node_of = tree.codes[target, level - 1]  # [U]; 0 when the path is shorter
        keep = node_of > 0
        node_of, lp = node_of[keep], log_p[keep][:, nodes]
        total = max(len(node_of), 1)
        row = {"nodes": len(nodes), "users": len(node_of)}
        for b in bs:
            kb = min(b, len(nodes))
            row[f"generator@{b}"] = (nodes[lp.topk(kb, dim=1).indices] == node_of[:, None]).any(1).sum().item() / total
        for b in bs:
            row[f"popular@{b}"] = (
                torch.isin(node_of, nodes[counts.topk(min(b, len(nodes))).indices]).sum().item() / total
            )
        out[f"level_{level}"] = row
    return out


def selection_coverage(selected: torch.Tensor, tree, target: torch.Tensor) -> dict:
    """How often the selected sub-libraries hold the target, and how much of the library they are.

    Args:
        selected: [U, N] bool, the selected nodes of each user.
        tree: the model's :class:`TreeTensors`.
        target: [U] target item ids.

    Returns:
        dict: ``target_in_selection`` (fraction of users), ``library_fraction`` and
        ``nodes_per_user`` (means over users).
    """
    pos = tree.pos[target][:, None]  # [U, 1] the target's place in tree order
    inside = selected & (pos >= tree.lo[None, :]) & (pos < tree.hi[None, :])  # [U, N]
    return {
        "target_in_selection": inside.any(1).float().mean().item(),
        "library_fraction": (selected.long() @ tree.size).float().mean().item() / int(tree.size[0]),
        "nodes_per_user": selected.sum(1).float().mean().item(),
    }


def coverage_sweep(log_p, target, tree, budgets, beams, max_nodes: int) -> list[dict]:
    """:func:`selection_coverage` for the frontier at each budget and the beam at each size."""
    from recbole_rimirec.retrieval.selection import select_beam, select_frontier

    rows = []
    for budget in budgets:
        selected = select_frontier(log_p, tree, max(1, round(budget * int(tree.size[0]))), max_nodes)
        rows.append(
            {"select_method": "frontier", "select_budget": budget, **selection_coverage(selected, tree, target)}
        )
    for beam in beams:
        rows.append(
            {
                "select_method": "beam",
                "beam_size": beam,
                **selection_coverage(select_beam(log_p, tree, beam), tree, target),
            }
        )
    return rows


def generator_figures(checkpoint: str, budgets, beams) -> dict:
    """Generator accuracy per level and the selection coverage sweep of one saved run."""
    from recbole_rimirec.checkpoint import load_checkpoint

    max_nodes = load_checkpoint(checkpoint)["config"]["select_max_nodes"]
    log_p, target, tree, train_codes = test_log_probs(checkpoint)
    return {
        "generator_accuracy": generator_accuracy(log_p, target, tree, train_codes),
        "selection_coverage": coverage_sweep(log_p, target, tree, budgets, beams, max_nodes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budgets", nargs="+", type=float, default=BUDGETS)
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 2, 5, 10, 20])
    parser.add_argument("--backends", nargs="+", default=["faiss", "exact"], choices=["faiss", "exact"])
    parser.add_argument(
        "--generator_only",
        action="store_true",
        help="recompute only the generator accuracy and selection coverage into an existing --out JSON",
    )
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.generator_only:
        result = json.loads(out.read_text())
        result.update(generator_figures(args.checkpoint, args.budgets, args.beams))
        out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
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
        **generator_figures(args.checkpoint, args.budgets, args.beams),
    }
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
