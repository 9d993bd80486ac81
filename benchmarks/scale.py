"""Synthetic scale run: tree build, index build, retrieval throughput and memory as the library grows.

For each library size (default 100k, 1M, 5M items x 64 dims, a Gaussian mixture so the tree has
structure), in a fresh process: hierarchical k-means tree (depth 3, branching 32, leaves <= 64),
the per-node Faiss index, per-category retrieval (each query searches 10 random leaves, top 50
each, merged) against a full scan of the library (top 50), and memory: peak RSS and the index's
resident growth relative to the raw vectors. The 1M-item case cannot go through RecBole's
evaluation (a dense [users, items] score matrix would not fit), so it is measured here directly.

Run: python benchmarks/scale.py --sizes 100000 1000000 5000000 --out benchmarks/results/scale-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_size(n: int, dim: int, queries: int, full_queries: int, seed: int = 0) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from recbole_rimirec.retrieval.index import NodeIndex
    from recbole_rimirec.retrieval.merge import group_by_user, merge_topk
    from recbole_rimirec.tree.itemtree import build_tree

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1024, dim)).astype(np.float32)
    x = centers[rng.integers(0, 1024, n + 1)] + 0.5 * rng.standard_normal((n + 1, dim)).astype(np.float32)
    x[0] = 0
    raw_mb = x.nbytes / 2**20
    out = {"items": n, "dim": dim, "raw_vectors_mb": raw_mb}
    t = time.perf_counter()
    tree = build_tree(x, 32, 64, 3, seed)
    out["tree_build_s"] = time.perf_counter() - t
    out["tree_nodes"] = tree.num_nodes
    vectors = torch.from_numpy(x)
    before = rss_mb()
    t = time.perf_counter()
    index = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, "faiss")
    out["index_build_s"] = time.perf_counter() - t
    out["index_resident_mb"] = rss_mb() - before
    out["index_over_raw"] = out["index_resident_mb"] / raw_mb
    leaves = np.flatnonzero(tree.is_leaf)
    per_user = 10
    q = torch.from_numpy(rng.standard_normal((queries, dim)).astype(np.float32))
    user = torch.arange(queries).repeat_interleave(per_user)
    nodes = torch.from_numpy(rng.choice(leaves, queries * per_user))
    t = time.perf_counter()
    s, ids = index.search(q[user], nodes, 50)
    merge_topk(*group_by_user(user, s, ids, queries), 50)
    out["per_category_qps"] = queries / (time.perf_counter() - t)
    out["per_category_items_per_query"] = float(tree.node_size[nodes.numpy()].sum() / queries)
    import faiss

    full = faiss.IndexFlatIP(dim)  # the full-scan baseline: every item for every query
    full.add(x[1:])
    t = time.perf_counter()
    full.search(q[:full_queries].numpy(), 50)
    out["full_scan_qps"] = full_queries / (time.perf_counter() - t)
    out["speedup"] = out["per_category_qps"] / out["full_scan_qps"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--full_queries", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale-cpu.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.dim, args.queries, args.full_queries)))
        return 0
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--queries", str(args.queries)]
        cmd += ["--full_queries", str(args.full_queries)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(line))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"machine": f"{os.cpu_count()}-core CPU", "command": " ".join(sys.argv)}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
