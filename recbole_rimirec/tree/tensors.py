"""The tree's node table as torch tensors, for models and retrieval on any device."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.tree.itemtree import ItemTree

# buffer of TreeTensors -> the ItemTree array it holds (the rest are derived from these)
_BUFFER_ARRAYS = {
    "perm": "perm",
    "lo": "node_lo",
    "hi": "node_hi",
    "parent": "node_parent",
    "depth": "node_depth",
    "child_lo": "child_lo",
    "child_hi": "child_hi",
}


class TreeTensors(nn.Module):
    """Buffers of an :class:`ItemTree` (moved with the model, saved in its state dict).

    Attributes:
        parent, depth, lo, hi, child_lo, child_hi, size, is_leaf: [N] per node.
        perm: [n_items - 1] item ids in tree order; pos: [n_items] position of each item in perm.
        codes: [n_items, D] path of node ids below the root (0-padded); leaf: [n_items].
        levels: list of [N_l] node ids at depth l (l = 1..D).
    """

    def __init__(self, tree: ItemTree):
        super().__init__()
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
        self.num_nodes = tree.num_nodes
        self.max_depth = max(tree.depth, 1)
        arrays = {name: getattr(tree, array) for name, array in _BUFFER_ARRAYS.items()}
        for name, value in {**arrays, "pos": tree.pos, "codes": tree.codes, "leaf": tree.leaf_of}.items():
            self.register_buffer(name, as_t(value))
        self.register_buffer("size", self.hi - self.lo)
        self.register_buffer("is_leaf", self.child_lo == self.child_hi)
        for level in range(1, self.max_depth + 1):
            self.register_buffer(f"level_{level}", as_t(np.flatnonzero(tree.node_depth == level)))

    def level(self, depth: int) -> torch.Tensor:
        """Node ids at a depth.

        Args:
            depth: 1 for the root's children, up to ``max_depth``.

        Returns:
            torch.Tensor: [n] ids of the nodes at that depth.
        """
        return getattr(self, f"level_{depth}")

    def in_node(self, node: torch.Tensor) -> torch.Tensor:
        """Membership of every item in the given nodes.

        Args:
            node: [P] node ids.

        Returns:
            torch.Tensor: [P, n_items] bool, True where the item lies in the node (padding never).
        """
        pos = self.pos[None, :]  # [1, n_items]
        return (pos >= self.lo[node][:, None]) & (pos < self.hi[node][:, None])


def tree_from_buffers(state_dict: dict, prefix: str = "tree.") -> ItemTree | None:
    """The tree a model's state dict holds (its :class:`TreeTensors` buffers).

    Args:
        state_dict: a model's state dict.
        prefix: where the buffers sit in it.

    Returns:
        ItemTree | None: the tree (``meta`` empty), or ``None`` when the state dict holds none.

    Raises:
        ConfigError: when the buffers do not make a valid tree.
    """
    if any(prefix + name not in state_dict for name in (*_BUFFER_ARRAYS, "pos")):
        return None
    arrays = {array: state_dict[prefix + name].cpu().numpy().astype(np.int64) for name, array in _BUFFER_ARRAYS.items()}
    tree = ItemTree(n_items=len(state_dict[prefix + "pos"]), **arrays)
    problem = tree.invariant_violation()
    if problem:
        raise ConfigError(f"the checkpoint's item tree is not a valid tree: {problem}")
    return tree


def tree_equal(tree: ItemTree, tensors: TreeTensors) -> bool:
    """Whether a tree is the one a :class:`TreeTensors` holds (same nodes, same item order).

    Args:
        tree: an :class:`ItemTree`.
        tensors: a model's tree buffers.

    Returns:
        bool: True when every array matches.
    """
    for name, array in _BUFFER_ARRAYS.items():
        mine = getattr(tensors, name).cpu().numpy()
        theirs = getattr(tree, array)
        if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
            return False
    return len(tensors.pos) == tree.n_items
