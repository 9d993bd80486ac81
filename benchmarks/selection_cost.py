"""Where RimiRec's evaluation time per user goes as the library grows, without training a model.

A synthetic library (a Gaussian mixture of item vectors, as ``scale.py``) gets RimiRec's serving
structures at its defaults: the item tree (branching 32, leaves of 64, depth 2), the leaves cut into
sub-clusters of about 16 items, and the per-node Faiss index. Users are states near the mixture's
centres, and their P(node | user) a softmax of each node's mean vector. Each stage of
``RimiRec.candidates`` with ``subcluster_size`` is then timed on the library's own functions, in
ms per user (the median of three batches): choosing the sub-clusters (``subcluster_pairs``), the
searched (user, leaf) pairs and their parts, the search with the ranking query and the one with the
normaliser's query (``retrieval_score: mixed`` on Faiss). A scan of the whole library per user, as
SASRecAllPos's ``retrieval`` does it (one node: blocked matrix products), is the reference. One JSON
row per size, appended to ``--out``.

Run: python benchmarks/selection_cost.py --sizes 1000000 5000000 --out benchmarks/results/selection-cost-cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_rimirec.model.generator import node_log_probs  # noqa: E402
from recbole_rimirec.retrieval.index import NodeIndex  # noqa: E402
from recbole_rimirec.retrieval.selection import (  # noqa: E402
    COMPACT_POOL_SHARE,
    pair_parts,
    subcluster_budgets,
    subcluster_pairs,
)
from recbole_rimirec.tree.itemtree import build_tree  # noqa: E402
from recbole_rimirec.tree.subclusters import split_leaves  # noqa: E402
from recbole_rimirec.tree.tensors import TreeTensors  # noqa: E402


def library(n: int, dim: int, users: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n + 1, dim] item vectors (row 0 padding) and [users, dim] states, around 1,024 centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, dim)).astype(np.float32)
    x = centres[rng.integers(0, 1024, n + 1)] + 0.5 * rng.standard_normal((n + 1, dim)).astype(np.float32)
    x[0] = 0
    h = centres[rng.integers(0, 1024, users)] + 0.5 * rng.standard_normal((users, dim)).astype(np.float32)
    return x / 8, h / 8  # scores of a few units, as a trained model's


def node_means(vectors: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """[N, H] the mean item vector of every node (the root's: zero)."""
    sums = torch.zeros(tree.num_nodes, vectors.shape[1])
    for d in range(tree.codes.shape[1]):  # each level's node of every item; 0 pads below a leaf
        sums.index_add_(0, tree.codes[1:, d], vectors[1:])
    return sums / tree.size.clamp(min=1)[:, None].float()


def one_size(n: int, users: int, budget: float, pool: float, full_users: int, dim: int = 64) -> dict:
    """Times the stages at one library size.

    Args:
        n: items.
        users: users per timed batch.
        budget: ``select_budget``, a fraction of the library or a number of items.
        pool: ``subcluster_pool``, a fraction of the library or a number of items.
        full_users: users of the full-scan reference.
        dim: vector size.

    Returns:
        dict: one row (ms per user per stage, sizes, build seconds).
    """
    x, h_np = library(n, dim, users)
    t = time.perf_counter()
    tree = TreeTensors(build_tree(x, 32, 64, 2, 0))
    row = {"n_items": n, "users": users, "tree_s": time.perf_counter() - t}
    vectors, h = torch.from_numpy(x), torch.from_numpy(h_np)
    t = time.perf_counter()
    split = split_leaves(vectors, tree, 16)
    row["split_s"] = time.perf_counter() - t
    index = NodeIndex(vectors, split.perm, torch.cat([tree.lo, split.lo]), torch.cat([tree.hi, split.hi]), "faiss")
    log_p = node_log_probs(h @ node_means(vectors, tree).T, tree)  # [B, N]
    pool_n, budget_n, pool_nodes = subcluster_budgets(budget, pool, n, 64)  # select_max_nodes' default
    times = {"selection": [], "parts": [], "search": [], "normaliser": []}
    for _ in range(3):
        t0 = time.perf_counter()
        b, c = subcluster_pairs(log_p, h, tree, split, pool_n, budget_n, pool_nodes, "density")
        t1 = time.perf_counter()
        selected = torch.zeros_like(log_p, dtype=torch.bool)
        selected[b, split.leaf[c]] = True
        user, node = selected.nonzero(as_tuple=True)
        parts = pair_parts(b, c, user, node, split.leaf, tree.num_nodes)
        t2 = time.perf_counter()
        index.search_with_logsumexp(h[user], node, 50, parts)
        t3 = time.perf_counter()
        index.search_with_logsumexp(h[user], node, 50, parts)  # the mixed score's second scan
        t4 = time.perf_counter()
        for key, (a, z) in zip(times, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)], strict=True):
            times[key].append(1000 * (z - a) / users)
    row.update({f"{key}_ms": statistics.median(v) for key, v in times.items()})
    row["total_ms"] = sum(row[f"{key}_ms"] for key in times)
    whole = NodeIndex(vectors, torch.arange(1, n + 1), torch.tensor([0]), torch.tensor([n]), "faiss")
    t = time.perf_counter()
    whole.search(h[:full_users], torch.zeros(full_users, dtype=torch.long), 50)  # SASRecAllPos's retrieval
    row["full_scan_ms"] = 1000 * (time.perf_counter() - t) / full_users
    row.update(
        budget_items=budget_n,
        pool_items=pool_n,
        compact=pool_n <= COMPACT_POOL_SHARE * n,
        subclusters=len(split.size),
        searched_items=float(split.size[c].sum() / users),
        pairs_per_user=len(user) / users,
        threads=torch.get_num_threads(),
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 5_000_000])
    parser.add_argument("--users", type=int, default=512, help="users a batch (the scale runs' eval_batch_size)")
    parser.add_argument(
        "--select_budget", type=float, default=0.01, help="a fraction or items; as scale_train.py's RimiRec"
    )
    parser.add_argument("--subcluster_pool", type=float, default=0.3, help="a fraction or items; RimiRec's default")
    parser.add_argument("--full_users", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", required=True, help="a .jsonl file the rows are appended to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for n in args.sizes:
        row = one_size(n, args.users, args.select_budget, args.subcluster_pool, args.full_users)
        if args.note:
            row["note"] = args.note
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
