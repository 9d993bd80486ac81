"""The interest generator as a path decoder: a causal Transformer that emits the tree path level by level.

Reference: H. Pei et al., "Modeling Refined Multi-interest in Hierarchical Structure for
Recommendation" (RimiRec), stage 1, where a Transformer generates the category ids of a user's
circles level by level; the decoding follows TIGER (S. Rajput et al., "Recommender Systems with
Generative Retrieval", NeurIPS 2023), each level conditioned on the ids already chosen.

The sequence for a node ``v`` at depth ``d`` is ``[h, t(a_1), ..., t(a_d)]``: the user state, then
input embeddings of ``v``'s ancestors below the root down to ``v`` itself, each with a step
embedding. One causal Transformer layer reads it; its output at the last step is the query that
scores ``v``'s children (``q . e_child + b_child``, the same output table as
:class:`~recbole_rimirec.model.generator.TreeGenerator`). So P(child | parent, u) depends on the
chosen parent through the query, where the hierarchical softmax head uses one query ``h`` for all
levels. Training decodes the target's own path in one pass (teacher forcing, :meth:`PathDecoder.path_logits`,
which the inherited loss reads).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from recbole_rimirec.model.generator import TreeGenerator
from recbole_rimirec.tree.tensors import TreeTensors


class PathDecoder(TreeGenerator):
    """Scores the tree's nodes by decoding each node's path with a causal Transformer layer.

    Args:
        tree: the tree's tensors.
        hidden_size: size of the user state (and of the decoder).
        n_heads: attention heads of the decoder layer.
        inner_size: its feed-forward width.
        dropout: its dropout.
        layer_norm_eps: its LayerNorm epsilon.
    """

    def __init__(
        self,
        tree: TreeTensors,
        hidden_size: int,
        n_heads: int,
        inner_size: int,
        dropout: float,
        layer_norm_eps: float = 1e-12,
    ):
        super().__init__(tree, hidden_size)
        depth = tree.max_depth
        self.token_embedding = nn.Embedding(tree.num_nodes, hidden_size)  # the chosen ancestors, as inputs
        self.step_embedding = nn.Embedding(depth, hidden_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.step_embedding.weight, std=0.02)
        self.layer = nn.TransformerEncoderLayer(
            hidden_size,
            n_heads,
            inner_size,
            dropout,
            activation="gelu",
            layer_norm_eps=layer_norm_eps,
            batch_first=True,
        )
        parent, node_depth, leaf = tree.parent.cpu(), tree.depth.cpu(), tree.is_leaf.cpu()
        child_lo, child_hi = tree.child_lo.cpu(), tree.child_hi.cpu()
        width = int((child_hi - child_lo).max())
        self.depths = []  # the depths that have inner nodes
        for d in range(depth):
            nodes = torch.nonzero((node_depth == d) & ~leaf).flatten()  # [S] inner nodes at depth d
            if not len(nodes):
                continue
            path = torch.zeros(len(nodes), d, dtype=torch.long)  # [S, d] ancestors below the root, down to the node
            cur = nodes.clone()
            for j in range(d - 1, -1, -1):
                path[:, j] = cur
                cur = parent[cur]
            kids = child_lo[nodes][:, None] + torch.arange(width)  # [S, W] children, padded
            real = kids < child_hi[nodes][:, None]
            self.register_buffer(f"paths_{d}", path, persistent=False)
            self.register_buffer(f"kids_{d}", kids.clamp(max=tree.num_nodes - 1), persistent=False)
            self.register_buffer(f"real_{d}", real, persistent=False)
            self.depths.append(d)

    def decode(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The decoder's queries along paths.

        Args:
            h: [P, H] user states.
            tokens: [P, S, d] S paths of d node ids per user (d may be 0).

        Returns:
            torch.Tensor: [P, S, d + 1, H] the query after each step: step j scores the children of
            the path's j-th node (step 0: the root's children).
        """
        P, S, d = tokens.shape
        steps = self.step_embedding.weight[: d + 1]  # [d + 1, H]
        x = torch.cat([h[:, None, None, :].expand(P, S, 1, -1), self.token_embedding(tokens)], 2) + steps
        x = x.reshape(P * S, d + 1, -1)  # [P * S, d + 1, H]
        causal = torch.ones(d + 1, d + 1, dtype=torch.bool, device=h.device).triu(1)  # True: not attended
        return self.layer(x, src_mask=causal).view(P, S, d + 1, -1)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """One logit per node: each node scored by its parent's query.

        Args:
            h: [P, H] user states.

        Returns:
            torch.Tensor: [P, N] (the root's logit is 0 and unused).
        """
        out = h.new_zeros(len(h), self.tree.num_nodes)
        for d in self.depths:
            paths, kids, real = (getattr(self, f"{name}_{d}") for name in ("paths", "kids", "real"))
            q = self.decode(h, paths.expand(len(h), -1, -1))[:, :, -1]  # [P, S, H]
            scores = torch.einsum("psh,swh->psw", q, self.node_embedding(kids)) + self.node_bias[kids]  # [P, S, W]
            out[:, kids[real]] = scores[:, real]
        return out

    def path_logits(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits along each target's own path.

        Args:
            h: [P, H] user states.
            target: [P] target item ids.

        Returns:
            torch.Tensor: [P, D, N] row d scores every node as a child of the target's ancestor at depth d.
        """
        codes = self.tree.codes[target]  # [P, D]
        q = self.decode(h, codes[:, None, :-1])[:, 0]  # [P, D, H]
        return q @ self.node_embedding.weight.T + self.node_bias  # [P, D, N]
