"""Evaluation by search over the whole library, for models whose users are K vectors.

The multi-interest baselines (K interests) and SASRecAllPos (K = 1) score an item by the best
inner product of its embedding with one of the user's vectors. With ``retrieval`` other than
``full`` they give RecBole's evaluation hook (:class:`~recbole_rimirec.trainer.RetrievalTrainer`)
a top-k list per user instead of a dense [users x items] matrix: one Faiss (or torch) index over
the item table, searched per vector and merged by score, which is the reference's serving rule.
With ``eval_from_lists: True`` the metrics come from those lists, so a million-item library is
scored without the dense matrix.
"""

from __future__ import annotations

import torch

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.retrieval.index import NodeIndex
from recbole_rimirec.retrieval.merge import group_by_user, merge_topk

RETRIEVALS = ("full", "auto", "faiss", "exact")


def check_retrieval(config) -> None:
    """Checks the ``retrieval`` key.

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the value and the choices.
    """
    if (config["retrieval"] or "full") not in RETRIEVALS:
        raise ConfigError(f"retrieval '{config['retrieval']}' is not one of {', '.join(RETRIEVALS)}")


class LibrarySearch:
    """``build_index`` and ``retrieve`` over the whole item table.

    The model provides ``item_embedding`` (the table searched), ``n_items``, a ``retrieval``
    attribute (a value of :data:`RETRIEVALS`) and :meth:`query_vectors`.
    """

    index: NodeIndex | None = None

    def query_vectors(self, interaction) -> torch.Tensor:
        """The user's vectors.

        Args:
            interaction: a batch with the history fields.

        Returns:
            torch.Tensor: [B, K, d].
        """
        raise NotImplementedError

    def build_index(self) -> NodeIndex:
        """One index over the whole library (a single node), rebuilt before every evaluation.

        Returns:
            NodeIndex: the index, also kept as ``self.index``.
        """
        n = self.n_items
        perm = torch.arange(1, n)
        lo, hi = torch.tensor([0]), torch.tensor([n - 1])
        self.index = NodeIndex(self.item_embedding.weight, perm, lo, hi, self.retrieval)
        return self.index

    @torch.no_grad()
    def retrieve(self, interaction, k: int):
        """Top-k per user vector by search over the library, merged by score.

        Args:
            interaction: a batch with the history fields.
            k: merged list length.

        Returns:
            (scores, ids, nodes, items): [B, k] merged list; [B] searches per user (K) and items
            scored (the whole library for each vector).
        """
        if self.index is None:
            self.build_index()
        queries = self.query_vectors(interaction)  # [B, K, d]
        B, K, d = queries.shape
        user = torch.arange(B, device=queries.device).repeat_interleave(K)  # [B * K]
        s, ids = self.index.search(queries.reshape(B * K, d), torch.zeros_like(user), k)
        merged_s, merged_i = merge_topk(*group_by_user(user, s, ids, B), k)
        searched = torch.full((B,), K, device=queries.device)
        return merged_s, merged_i, searched, searched * (self.n_items - 1)
