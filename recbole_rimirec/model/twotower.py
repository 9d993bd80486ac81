"""RimiRec's category-specific two-tower: one user embedding per tree node, scored within the node.

Reference: H. Pei et al., RimiRec, stage 2 ("refined multi-interest retrieval"). The user tower
conditions the sequence state on a node, ``u_n = h + e_n`` (``add``) or
``u_n = h * (1 + g_n) + b_n`` (``film``); the item tower is the item embedding. The within-node
scorer is trained with an exact softmax over the node's items (one matmul and a mask), so
``log softmax_{j in n} s(u_n, j)`` is a proper log P(item | node, user).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.tree.tensors import TreeTensors

CONDITIONINGS = ("add", "film")


class NodeConditionedTower(nn.Module):
    """Node-specific user embeddings and the within-node softmax loss.

    Args:
        tree: the tree's tensors.
        hidden_size: H.
        conditioning: ``add`` or ``film``.
    """

    def __init__(self, tree: TreeTensors, hidden_size: int, conditioning: str = "add"):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ConfigError(f"node_conditioning '{conditioning}' is not one of {', '.join(CONDITIONINGS)}")
        self.tree, self.conditioning = tree, conditioning
        self.shift = nn.Embedding(tree.num_nodes, hidden_size)
        nn.init.zeros_(self.shift.weight)
        self.gain = nn.Embedding(tree.num_nodes, hidden_size) if conditioning == "film" else None
        if self.gain is not None:
            nn.init.zeros_(self.gain.weight)

    def user(self, h: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """User embeddings specific to nodes.

        Args:
            h: [P, H] sequence states.
            nodes: [P] node ids.

        Returns:
            torch.Tensor: [P, H].
        """
        if self.gain is not None:
            return h * (1 + self.gain(nodes)) + self.shift(nodes)
        return h + self.shift(nodes)

    def loss(self, h: torch.Tensor, target: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
        """Exact softmax over the items of each of the target's ancestors, averaged over levels.

        Positions are grouped by the target's top-level node: every deeper ancestor lies inside
        it, and its items are one contiguous range of the tree's permutation, so each group
        scores only that range (about ``1 / branching`` of the library) instead of every item.

        Args:
            h: [P, H] sequence states.
            target: [P] target item ids.
            item_weight: [n_items, H] item tower.

        Returns:
            torch.Tensor: the mean loss over (position, level) pairs.
        """
        tree = self.tree
        codes = tree.codes[target]  # [P, D] ancestors below the root
        top, order = torch.sort(codes[:, 0])
        nodes, counts = torch.unique_consecutive(top, return_counts=True)
        # one host sync for the loop's bounds (a GPU would stall on each int() of a device tensor)
        table = torch.stack([nodes, counts, tree.lo[nodes], tree.hi[nodes], tree.is_leaf[nodes].long()], 1).tolist()
        total, count = h.new_zeros(()), h.new_zeros(())
        for (node, _, lo, hi, leaf), rows in zip(table, torch.split(order, counts.tolist()), strict=True):
            if node == 0:  # targets without a code (never for real items)
                continue
            items = tree.perm[lo:hi]  # [S] the node's items
            column = tree.pos[target[rows]] - lo  # [R] the target's column among them
            h_rows, v = h[rows], item_weight[items]  # [R, H], [S, H]
            col = torch.arange(hi - lo, device=h.device)[None, :]  # [1, S]
            for level in range(1 if leaf else codes.shape[1]):
                node_at = codes[rows, level]  # [R]
                keep = node_at > 0  # rows with an ancestor at this level (deeper trees may stop early)
                logits = self.user(h_rows, node_at) @ v.T  # [R, S]
                if level > 0:  # within the deeper ancestor: its items are a sub-range of the columns
                    inside = (col >= (tree.lo[node_at] - lo)[:, None]) & (col < (tree.hi[node_at] - lo)[:, None])
                    logits = logits.masked_fill(~(inside | ~keep[:, None]), float("-inf"))
                total = total + (F.cross_entropy(logits, column, reduction="none") * keep).sum()
                count = count + keep.sum()
        return total / count.clamp(min=1)

    def sampled_loss(
        self,
        h: torch.Tensor,
        target: torch.Tensor,
        item_weight: torch.Tensor,
        negatives: int,
        generator: torch.Generator | None = None,
        sparse: bool = False,
    ) -> torch.Tensor:
        """:meth:`loss` with each within-node softmax over at most ``negatives`` items: no loop over nodes.

        For every (position, ancestor) pair, a node of at most ``negatives`` items is scored whole
        (exactly as :meth:`loss`); a larger node by ``negatives`` of its items drawn uniformly (with
        replacement) beside the target. A uniform proposal shifts every logit by the same
        ``log(negatives / size)``, so the sampled softmax needs no correction; a draw equal to the
        target is masked. The cost per target is bounded whatever the library's size.

        Args:
            h: [P, H] sequence states.
            target: [P] target item ids.
            item_weight: [n_items, H] item tower.
            negatives: M, the most items scored per (position, node).
            generator: torch random generator for the draw.
            sparse: give ``item_weight`` a sparse gradient (the rows looked up), for ``sparse_item_grad``.

        Returns:
            torch.Tensor: the mean loss over (position, level) pairs.
        """
        tree = self.tree
        codes = tree.codes[target]  # [P, D]
        row, level = (codes > 0).nonzero(as_tuple=True)  # [R] pairs with an ancestor at that level
        node, tgt = codes[row, level], target[row]  # [R]
        lo, size = tree.lo[node], tree.size[node]  # [R]
        col = torch.arange(negatives, device=h.device)[None, :]  # [1, M]
        small = size <= negatives  # [R] scored whole
        draw = (torch.rand((len(node), negatives), generator=generator, device=h.device) * size[:, None]).long()
        offset = torch.where(small[:, None], col.expand(len(node), -1), draw)  # [R, M]
        real = ~small[:, None] | (col < size[:, None])  # [R, M] slots holding an item of the node
        items = tree.perm[(lo[:, None] + offset.clamp(max=(size[:, None] - 1).clamp(min=0))).clamp(min=0)]  # [R, M]
        u = self.user(h[row], node)  # [R, H]
        neg = torch.einsum("rh,rmh->rm", u, F.embedding(items, item_weight, sparse=sparse))  # [R, M]
        neg = neg.masked_fill(~real | (items == tgt[:, None]), float("-inf"))
        pos = (u * F.embedding(tgt, item_weight, sparse=sparse)).sum(-1, keepdim=True)  # [R, 1]
        logits = torch.cat([pos, neg], 1)  # [R, 1 + M]
        return F.cross_entropy(logits, torch.zeros_like(tgt))
