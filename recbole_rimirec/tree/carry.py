"""Warm starts for node-sized tables when the item tree is rebuilt (``tree_rebuild``).

A rebuilt tree has other nodes, so the tables indexed by node (code embeddings, the tower's
per-node shifts, the generator's node vectors) cannot be copied. These functions give each new
node what its items had: the mean over a node's items of the old rows at the same depth, or the
mean of the items' own vectors.
"""

from __future__ import annotations

import torch

from recbole_rimirec.tree.tensors import TreeTensors


def carry_node_rows(old_rows: torch.Tensor, old_codes: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """Per-node rows for a new tree: each node gets the mean of its items' old rows at its depth.

    Args:
        old_rows: [N_old, H] a table indexed by the old tree's node ids (row 0, the root, unused).
        old_codes: [n_items, D_old] the old tree's item codes (node ids below the root, 0-padded).
        tree: the new tree.

    Returns:
        torch.Tensor: [N_new, H]; the root's row and rows of depths the old tree lacked are zeros.
    """
    new = torch.zeros(tree.num_nodes, old_rows.size(1), dtype=old_rows.dtype, device=old_rows.device)
    count = torch.zeros(tree.num_nodes, dtype=old_rows.dtype, device=old_rows.device)
    for depth in range(1, min(tree.max_depth, old_codes.size(1)) + 1):
        node = tree.codes[1:, depth - 1]  # [n_items - 1] each item's new node at this depth (0: none)
        old = old_codes[1:, depth - 1]  # [n_items - 1] its old node at this depth (0: none)
        keep = (node > 0) & (old > 0)
        new.index_add_(0, node[keep], old_rows[old[keep]])
        count.index_add_(0, node[keep], torch.ones_like(node[keep], dtype=old_rows.dtype))
    return new / count.clamp_min(1)[:, None]


def node_item_means(item_vectors: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """The mean item vector of every node.

    Args:
        item_vectors: [n_items, H] by item id (row 0 padding).
        tree: the tree.

    Returns:
        torch.Tensor: [N, H]; the root holds the mean of every item.
    """
    ordered = item_vectors[tree.perm].double()  # [n_items - 1, H] in tree order: node n is rows lo[n]:hi[n]
    prefix = torch.cat([ordered.new_zeros(1, ordered.size(1)), ordered.cumsum(0)])  # [n_items, H]
    sums = prefix[tree.hi] - prefix[tree.lo]  # [N, H]
    return (sums / tree.size.clamp_min(1)[:, None].double()).to(item_vectors.dtype)
