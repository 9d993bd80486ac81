"""The interest generator's head: P(node | user) over the item tree, level by level.

Reference: H. Pei et al., "Modeling Refined Multi-interest in Hierarchical Structure for
Recommendation" (RimiRec), stage 1. A user state ``h`` scores every node; a node's conditional
probability is a softmax over its siblings, P(child | parent, u), and P(node | u) is the product
along the path (a hierarchical softmax over the tree), so P(node | u) only shrinks with depth and
the children of a node share its mass.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from recbole_rimirec.tree.tensors import TreeTensors


def node_log_probs(logits: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """log P(node | user) for every node from per-node logits.

    Args:
        logits: [P, N] one logit per node (the root's is ignored).
        tree: the tree's tensors.

    Returns:
        torch.Tensor: [P, N] log-probabilities; the root has 0, children of a node sum (in
        probability) to their parent.
    """
    P, N = logits.shape
    parent = tree.parent.clamp(min=0)  # [N], root -> itself (masked below)
    not_root = tree.parent >= 0
    # log-sum-exp over each parent's children: scatter the max, then the sum of exps.
    masked = logits.masked_fill(~not_root[None, :], float("-inf"))
    group_max = torch.full((P, N), float("-inf"), device=logits.device, dtype=logits.dtype)
    group_max = group_max.scatter_reduce(1, parent.expand(P, N), masked, reduce="amax", include_self=True)
    shifted = (masked - group_max.gather(1, parent.expand(P, N))).exp()
    sums = torch.zeros_like(logits).scatter_add(1, parent.expand(P, N), shifted)
    log_z = group_max + sums.clamp_min(1e-30).log()  # [P, N] indexed by parent id
    cond = logits - log_z.gather(1, parent.expand(P, N))  # log P(child | parent)
    cond = cond.masked_fill(~not_root[None, :], 0.0)
    out = torch.zeros_like(logits)
    for depth in range(1, tree.max_depth + 1):
        nodes = tree.level(depth)
        out[:, nodes] = cond[:, nodes] + out[:, tree.parent[nodes]]
    return out


def path_log_probs(logits: torch.Tensor, tree: TreeTensors, target: torch.Tensor) -> torch.Tensor:
    """log P(leaf(target) | user), from the softmax over each ancestor's siblings only.

    The same value as ``node_log_probs(logits, tree)`` at the target's leaf, at a cost of
    ``depth x branching`` per row instead of one pass over every node.

    Args:
        logits: [P, N] one logit per node, or [P, D, N] one row per level (a decoder's logits
            for level d + 1 given the target's own ancestor at depth d).
        tree: the tree's tensors.
        target: [P] target item ids.

    Returns:
        torch.Tensor: [P] log-probabilities of the targets' leaves.
    """
    codes = tree.codes[target]  # [P, D] ancestors below the root, 0-padded
    P, D = codes.shape
    N = logits.shape[-1]
    if logits.dim() == 2:
        logits = logits[:, None].expand(P, D, N)  # [P, D, N], a view
    parents = torch.cat([torch.zeros_like(codes[:, :1]), codes[:, :-1]], 1)  # [P, D] each ancestor's parent
    width = int((tree.child_hi - tree.child_lo).max())
    sibling = tree.child_lo[parents][:, :, None] + torch.arange(width, device=logits.device)  # [P, D, W]
    real = sibling < tree.child_hi[parents][:, :, None]
    sib_logits = logits.gather(2, sibling.clamp(max=N - 1))  # [P, D, W]
    log_z = sib_logits.masked_fill(~real & (codes > 0)[:, :, None], float("-inf")).logsumexp(2)  # [P, D] finite
    cond = logits.gather(2, codes[:, :, None]).squeeze(2) - log_z  # [P, D] log P(ancestor | parent)
    return cond.masked_fill(codes == 0, 0.0).sum(1)


def distillation_loss(log_p: torch.Tensor, item_probs: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """Cross-entropy of the generator against another model's mass per leaf.

    The mass a full softmax over items puts on a leaf is a soft target for P(leaf | user): it
    spreads each target's one-hot leaf over the leaves of the items the user may also take. Since a
    node's probability is the sum of its leaves', matching the leaves matches every level.

    Args:
        log_p: [P, N] the generator's log P(node | user).
        item_probs: [P, n_items] the other model's probabilities over items (item 0, padding, ignored);
            detach it to teach the generator alone.
        tree: the tree's tensors.

    Returns:
        torch.Tensor: the mean over positions of -sum_leaf mass(leaf) log P(leaf | user).
    """
    mass = torch.zeros_like(log_p).index_add_(1, tree.leaf[1:], item_probs[:, 1:].to(log_p.dtype))  # [P, N]
    return -(mass * log_p).sum(1).mean()


def node_mass_log_probs(item_probs: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """log of the mass a distribution over items puts on every node (its items' sum).

    Args:
        item_probs: [P, n_items] probabilities over items (item 0, padding, ignored).
        tree: the tree's tensors.

    Returns:
        torch.Tensor: [P, N] log mass per node, in the generator's layout (the root holds 0 = log 1).
    """
    mass = torch.zeros(len(item_probs), tree.num_nodes, dtype=item_probs.dtype, device=item_probs.device)
    mass.index_add_(1, tree.leaf[1:], item_probs[:, 1:])  # [P, N] the leaves' own mass
    return leaf_mass_log_probs(mass, tree)


def leaf_mass_log_probs(mass: torch.Tensor, tree: TreeTensors) -> torch.Tensor:
    """log mass per node from the mass on the leaves (a parent holds its children's sum).

    Args:
        mass: [P, N] probabilities on the leaf columns (0 elsewhere); changed in place.
        tree: the tree's tensors.

    Returns:
        torch.Tensor: [P, N] log mass per node (the root holds 0 = log 1).
    """
    for depth in range(tree.max_depth, 0, -1):  # a parent's mass is its children's
        nodes = tree.level(depth)
        inner = ~tree.is_leaf[tree.parent[nodes]]
        mass.index_add_(1, tree.parent[nodes][inner], mass[:, nodes][:, inner])
    mass[:, 0] = 1.0
    return mass.clamp_min(1e-30).log()


class TreeGenerator(nn.Module):
    """Scores the tree's nodes from a user state.

    Args:
        tree: the tree's tensors.
        hidden_size: size of the user state.
    """

    def __init__(self, tree: TreeTensors, hidden_size: int):
        super().__init__()
        self.tree = tree
        self.node_embedding = nn.Embedding(tree.num_nodes, hidden_size)
        self.node_bias = nn.Parameter(torch.zeros(tree.num_nodes))
        nn.init.normal_(self.node_embedding.weight, std=0.02)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """log P(node | user).

        Args:
            h: [P, H] user states.

        Returns:
            torch.Tensor: [P, N].
        """
        return node_log_probs(self.logits(h), self.tree)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """One logit per node.

        Args:
            h: [P, H] user states.

        Returns:
            torch.Tensor: [P, N].
        """
        return h @ self.node_embedding.weight.T + self.node_bias

    def loss(self, h: torch.Tensor, target: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of the target's path (= -log P(leaf(target) | user)).

        Without ``log_p``, only the softmax over each ancestor's siblings is computed
        (:func:`path_log_probs`), not P(node | user) for every node.

        Args:
            h: [P, H] user states.
            target: [P] target item ids.
            log_p: [P, N] ``self(h)`` when the caller has it already.

        Returns:
            torch.Tensor: the mean loss.
        """
        if log_p is None:
            return -path_log_probs(self.path_logits(h, target), self.tree, target).mean()
        return -log_p.gather(1, self.tree.leaf[target][:, None]).mean()

    def path_logits(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The logits :meth:`loss` reads along each target's path: here one row per user for every level.

        Args:
            h: [P, H] user states.
            target: [P] target item ids (unused: every level shares the query ``h``).

        Returns:
            torch.Tensor: [P, N], or [P, D, N] in a subclass whose query depends on the level.
        """
        return self.logits(h)
