"""Residual k-means codes against RimiRec's tree, offline: how finely each cuts the same item vectors.

Issue "RimiRec above SASRec" lists residual k-means codes (TIGER's semantic ids) as a lever on the tree.
Two readings, both measured on one trained model's item embeddings, with scikit-learn's k-means on every side:

- Residual codes per circle: the second level clusters ``x - centroid(circle)`` within each circle. That is
  the same clustering as the tree's own (k-means is unchanged by a translation), so it is not a new tree.
- A residual codebook shared by every circle (as in residual quantisation): one k-means over all residuals,
  with as many codes as the tree's mean number of sub-circles per circle, so both trees have about as many leaves.

Reported per k-means seed: the share of the vectors' variance left inside the leaves (lower is finer), and the
number, largest and median size of the leaves. No model is trained here.

Run: python benchmarks/residual_codes.py <RimiRec checkpoint .pth> --out <file.json>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans


def within_share(x: np.ndarray, labels: np.ndarray) -> float:
    """The share of the vectors' total variance left inside their groups.

    Args:
        x: [n, d] vectors.
        labels: [n] group of each vector.

    Returns:
        float: within-group sum of squares over the total sum of squares.
    """
    _, group = np.unique(labels, return_inverse=True)
    counts = np.bincount(group).astype(np.float64)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, group, x)
    within = (x**2).sum() - ((sums**2).sum(axis=1) / counts).sum()
    return float(within / ((x - x.mean(axis=0)) ** 2).sum())


def children(n: int, branching: int, leaf_size: int) -> int:
    """How many sub-circles the tree gives a circle of ``n`` items (``build_tree``'s rule)."""
    return max(2, min(branching, -(-n // leaf_size))) if n > leaf_size else 1


def circles(x: np.ndarray, branching: int, seed: int) -> KMeans:
    """The first level: k-means of every item vector into ``branching`` circles."""
    return KMeans(branching, n_init=1, random_state=seed).fit(x)


def two_level_codes(x: np.ndarray, top: KMeans, leaf_size: int, seed: int, shared: bool) -> np.ndarray:
    """Leaf labels of a two-level code: the circles, then sub-circles per circle or by a shared codebook.

    Args:
        x: [n, d] item vectors.
        top: the circles (:func:`circles`); their number is also the most sub-circles of a circle.
        leaf_size: circles this small are not split (per-circle codes only).
        seed: the k-means seed.
        shared: one codebook over every circle's residuals, with the per-circle rule's mean number of sub-circles.

    Returns:
        np.ndarray: [n] leaf label, ``circle * branching + sub-circle``.
    """
    branching, circle = top.n_clusters, top.labels_
    residual = x - top.cluster_centers_[circle]  # [n, d]
    sizes = np.bincount(circle, minlength=branching)
    if shared:
        codes = max(1, round(float(np.mean([children(int(s), branching, leaf_size) for s in sizes if s]))))
        sub = KMeans(codes, n_init=1, random_state=seed).fit(residual).labels_ if codes > 1 else 0 * circle
        return circle * branching + sub
    sub = np.zeros(len(x), dtype=np.int64)
    for c in np.flatnonzero(sizes):
        idx = np.flatnonzero(circle == c)
        k = children(len(idx), branching, leaf_size)
        if k > 1:
            sub[idx] = KMeans(k, n_init=1, random_state=seed).fit(residual[idx]).labels_
    return circle * branching + sub


def leaf_sizes(labels: np.ndarray) -> dict:
    """The number, largest and median size of the leaves."""
    counts = np.unique(labels, return_counts=True)[1]
    return {"leaves": int(len(counts)), "largest": int(counts.max()), "median": float(np.median(counts))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a RimiRec checkpoint (.pth) whose item embeddings are compared")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="k-means seeds")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: no checkpoint at {args.checkpoint}", file=sys.stderr)
        return 2
    import torch

    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = saved["config"]
    branching, leaf_size = int(config["tree_branching"]), int(config["tree_leaf_size"])
    x = saved["state_dict"]["item_embedding.weight"][1:].double().numpy()  # row 0 is padding
    rows = []
    for seed in args.seeds:
        top = circles(x, branching, seed)
        row = {"seed": seed, "circles_only": within_share(x, top.labels_)}
        for name, shared in (("per_circle", False), ("shared_codebook", True)):
            labels = two_level_codes(x, top, leaf_size, seed, shared)
            row[name] = {"within_share": within_share(x, labels), **leaf_sizes(labels)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = {"model": config["model"], "dataset": config["dataset"], "seed": config["seed"]}
    info.update({k: config[k] for k in ("tree_branching", "tree_leaf_size", "tree_rebuild", "global_negatives")})
    Path(args.out).write_text(json.dumps({"checkpoint_run": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
