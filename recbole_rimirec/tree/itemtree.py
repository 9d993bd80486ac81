"""The item tree: hierarchical k-means over item vectors, stored as contiguous node ranges.

RecBole's item ids are never renumbered. ``perm`` orders the items by their path, so every node
is a contiguous range ``perm[lo:hi]``; node ids are global and numbered breadth-first, so the
children of a node are the contiguous ids ``child_lo:child_hi``. Root is node 0. An item's code
is its path of node ids below the root (0-padded where the path is shorter than the tree).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from recbole_rimirec.errors import ConfigError, check_integer

ARRAYS = ("perm", "node_lo", "node_hi", "node_parent", "node_depth", "child_lo", "child_hi")


@dataclass
class ItemTree:
    """A built tree (see the module docstring for the layout).

    Attributes:
        n_items: item id space size, padding id 0 included (0 is in no node).
        perm: [n_items - 1] item ids in tree order.
        node_lo, node_hi: [N] each node's range in ``perm``.
        node_parent: [N] parent id (-1 for the root).
        node_depth: [N] depth (root 0).
        child_lo, child_hi: [N] each node's children ids (empty range for leaves).
        meta: how the tree was built (keys, seed, vector source, item-token digest).
    """

    n_items: int
    perm: np.ndarray
    node_lo: np.ndarray
    node_hi: np.ndarray
    node_parent: np.ndarray
    node_depth: np.ndarray
    child_lo: np.ndarray
    child_hi: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.node_lo)

    @property
    def depth(self) -> int:
        return int(self.node_depth.max())

    @property
    def is_leaf(self) -> np.ndarray:
        return self.child_lo == self.child_hi

    @property
    def node_size(self) -> np.ndarray:
        return self.node_hi - self.node_lo

    @property
    def pos(self) -> np.ndarray:
        """[n_items] each item's position in ``perm`` (-1 for padding)."""
        pos = np.full(self.n_items, -1, dtype=np.int64)
        pos[self.perm] = np.arange(len(self.perm))
        return pos

    @property
    def leaf_of(self) -> np.ndarray:
        """[n_items] the leaf holding each item (0 for padding)."""
        leaf = np.zeros(self.n_items, dtype=np.int64)
        for n in np.flatnonzero(self.is_leaf):
            leaf[self.perm[self.node_lo[n] : self.node_hi[n]]] = n
        return leaf

    @property
    def codes(self) -> np.ndarray:
        """[n_items, depth] node ids on each item's path below the root, 0-padded; row 0 is padding."""
        codes = np.zeros((self.n_items, max(self.depth, 1)), dtype=np.int64)
        node = self.leaf_of.copy()
        level = self.node_depth[node].copy()
        node[0], level[0] = 0, 0
        while np.any(level > 0):
            live = level > 0
            codes[live, level[live] - 1] = node[live]
            node[live] = self.node_parent[node[live]]
            level[live] -= 1
        return codes

    def save(self, path: str) -> None:
        """Writes the tree as plain arrays (``np.savez``, no pickle).

        Args:
            path: target ``.npz`` file.
        """
        arrays = {name: getattr(self, name) for name in ARRAYS}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez(path, n_items=np.int64(self.n_items), meta=np.array(json.dumps(self.meta)), **arrays)

    @classmethod
    def load(cls, path: str) -> ItemTree:
        """Reads a tree written by :meth:`save` and checks its invariants.

        Args:
            path: the ``.npz`` file.

        Returns:
            ItemTree: the tree.

        Raises:
            ConfigError: for a missing, truncated, tampered or non-tree file.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name].astype(np.int64) for name in ARRAYS}
                tree = cls(int(data["n_items"]), meta=json.loads(str(data["meta"])), **arrays)
        except FileNotFoundError:
            raise ConfigError(f"tree file not found: {path}") from None
        except Exception as err:  # zipfile, numpy and json raise different types for a bad file
            raise ConfigError(f"tree file {path} cannot be read: {type(err).__name__}: {err}"[:300]) from None
        problem = tree.invariant_violation()
        if problem:
            raise ConfigError(f"tree file {path} is not a valid tree: {problem}")
        return tree

    def invariant_violation(self) -> str | None:
        """Checks the layout; returns a description of the first violation, or None."""
        n = self.num_nodes
        if sorted(self.perm.tolist()) != list(range(1, self.n_items)):
            return "perm is not a permutation of the item ids"
        if n == 0 or self.node_lo[0] != 0 or self.node_hi[0] != len(self.perm) or self.node_parent[0] != -1:
            return "node 0 is not the root over all items"
        for arr in (self.node_lo, self.node_hi, self.node_parent, self.node_depth, self.child_lo, self.child_hi):
            if len(arr) != n:
                return "node arrays differ in length"
        for v in range(n):
            lo, hi = self.child_lo[v], self.child_hi[v]
            if lo == hi:
                continue
            kids = np.arange(lo, hi)
            if lo <= v or hi > n or np.any(self.node_parent[kids] != v):
                return f"children of node {v} are not its own"
            if self.node_lo[kids[0]] != self.node_lo[v] or self.node_hi[kids[-1]] != self.node_hi[v]:
                return f"children of node {v} do not cover its range"
            if np.any(self.node_hi[kids[:-1]] != self.node_lo[kids[1:]]) or np.any(self.node_size[kids] <= 0):
                return f"children of node {v} are not contiguous and non-empty"
            if np.any(self.node_depth[kids] != self.node_depth[v] + 1):
                return f"children of node {v} have the wrong depth"
        return None


def token_digest(tokens) -> str:
    """A digest of the dataset's item tokens in id order, to tie a saved tree to its dataset.

    Args:
        tokens: RecBole's raw item tokens by remapped id.

    Returns:
        str: 16 hex digits of their SHA-256.
    """
    return hashlib.sha256("\x1f".join(map(str, tokens)).encode("utf-8")).hexdigest()[:16]


def _split(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels for the rows of x (Faiss), falling back to an even split when k-means collapses."""
    from recbole_rimirec.retrieval.index import import_faiss

    km = import_faiss().Kmeans(x.shape[1], k, niter=20, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x)
    _, labels = km.index.search(x, 1)
    labels = labels.ravel()
    if len(np.unique(labels)) < 2:  # identical vectors: split evenly along a random direction
        order = np.argsort(x @ np.random.default_rng(seed).standard_normal(x.shape[1]), kind="stable")
        labels = np.empty(len(x), dtype=np.int64)
        labels[order] = np.arange(len(x)) * k // len(x)
    return labels


def check_tree_shape(branching, leaf_size, max_depth) -> None:
    """Checks the keys that shape the tree, before any data is read.

    Args:
        branching: ``tree_branching``, an integer >= 2.
        leaf_size: ``tree_leaf_size``, an integer >= 1.
        max_depth: ``tree_max_depth``, an integer >= 1.

    Raises:
        ConfigError: naming the key and the value.
    """
    check_integer("tree_branching", branching, 2)
    check_integer("tree_leaf_size", leaf_size, 1)
    check_integer("tree_max_depth", max_depth, 1)


def build_tree(
    vectors: np.ndarray, branching: int, leaf_size: int, max_depth: int, seed: int = 0, meta: dict | None = None
) -> ItemTree:
    """Hierarchical k-means, recursive per parent.

    A node is split when it holds more than ``leaf_size`` items and lies above ``max_depth``;
    it gets ``min(branching, ceil(n / leaf_size))`` children (at least 2), so paths may differ in
    length. Items with an all-zero vector (no training interaction) form their own child of the
    root, which is not split.

    Args:
        vectors: [n_items, d] item vectors; row 0 (padding) is ignored.
        branching: the most children a node may have (>= 2).
        leaf_size: nodes this small are not split (>= 1).
        max_depth: the deepest level (>= 1).
        seed: k-means seed (node v uses seed + v).
        meta: extra build information kept with the tree.

    Returns:
        ItemTree: the tree.

    Raises:
        ConfigError: for keys out of range.
    """
    n_items = len(vectors)
    check_tree_shape(branching, leaf_size, max_depth)
    if n_items < 2:
        raise ConfigError("the item tree needs at least one item")
    if branching > n_items - 1:
        raise ConfigError(f"tree_branching ({branching}) is larger than the {n_items - 1} items it splits")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    items = np.arange(1, n_items)
    warm = np.abs(x[items]).sum(axis=1) > 0
    perm = np.concatenate([items[warm], items[~warm]])
    lo, hi, parent, depth, child_lo, child_hi = [0], [len(perm)], [-1], [0], [0], [0]
    queue = deque([0])
    cold_root_child = int((~warm).sum())
    while queue:
        v = queue.popleft()
        a, b = lo[v], hi[v]
        if v == 0 and cold_root_child:
            b = a + int(warm.sum())  # split the warm items; the cold block becomes the last child
        n = b - a
        groups = []
        if n > leaf_size and depth[v] < max_depth and n >= 2:
            k = max(2, min(branching, -(-n // leaf_size)))
            labels = _split(x[perm[a:b]], k, seed + v)
            order = np.argsort(labels, kind="stable")
            perm[a:b] = perm[a:b][order]
            counts = np.bincount(labels, minlength=k)
            bounds = a + np.r_[0, np.cumsum(counts[counts > 0])]
            groups = list(zip(bounds[:-1], bounds[1:], strict=True))
        elif v == 0 and n > 0:
            groups = [(a, b)]
        if v == 0 and cold_root_child:
            groups.append((b, hi[0]))
        child_lo[v] = len(lo)
        for g_lo, g_hi in groups:
            lo.append(int(g_lo))
            hi.append(int(g_hi))
            parent.append(v)
            depth.append(depth[v] + 1)
            child_lo.append(0)
            child_hi.append(0)
            is_cold_block = v == 0 and cold_root_child and g_lo >= a + int(warm.sum())
            if not is_cold_block:
                queue.append(len(lo) - 1)
        child_hi[v] = len(lo)
        if child_hi[v] == child_lo[v]:
            child_lo[v] = child_hi[v] = 0
    arr = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    info = {"branching": branching, "leaf_size": leaf_size, "max_depth": max_depth, "seed": seed, **(meta or {})}
    return ItemTree(
        n_items, perm.astype(np.int64), arr(lo), arr(hi), arr(parent), arr(depth), arr(child_lo), arr(child_hi), info
    )
