"""Shared training and scoring of the multi-interest models (MIND, ComiRec-DR, ComiRec-SA).

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020.
A subclass defines :meth:`MultiInterestRecommender.interests`; this base adds the label-aware
readout, the loss (sampled softmax with shared negatives, or RecBole's full-softmax ``CE``) and
scoring by the maximum over interests, which never reads the target.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.layers import CapsuleRouting, item_counts, label_aware_readout, sampled_softmax_loss
from recbole_rimirec.model.library_search import LibrarySearch, check_retrieval
from recbole_rimirec.optim import check_lazy_adam
from recbole_rimirec.trainer import RetrievalTrainer

LOSSES = ("SSM", "CE")
SAMPLERS = ("popularity", "uniform")


class MultiInterestRecommender(LibrarySearch, SequentialRecommender):
    """Base of the multi-interest models.

    Config keys: ``embedding_size`` (d), ``interest_num`` (K), ``loss_type`` (``SSM`` sampled
    softmax | ``CE`` full softmax), ``neg_sampler`` (``popularity`` | ``uniform``),
    ``neg_sample_factor`` (negatives = factor x batch size), ``sparse_item_grad`` (the item table
    gets sparse gradients and a lazy Adam; needs ``loss_type: SSM``; for libraries of a million items).

    Args:
        config: the run's Config.
        dataset: the built train split.
    """

    input_type = InputType.POINTWISE
    train_modes = ("prefixes", "random_cut")
    trims_padding = True  # masked pooling: trailing padding changes nothing
    trainer_class = RetrievalTrainer

    @classmethod
    def check_config(cls, config) -> None:
        """Checks the loss, sampler and retrieval keys; the runner calls it before reading the data.

        Args:
            config: the run's Config.

        Raises:
            ConfigError: naming the first key with a value the model cannot use.
        """
        if config["loss_type"] not in LOSSES:
            raise ConfigError(
                f"loss_type '{config['loss_type']}' is not one of {', '.join(LOSSES)} for {config['model']}"
            )
        if config["neg_sampler"] not in SAMPLERS:
            raise ConfigError(f"neg_sampler '{config['neg_sampler']}' is not one of {', '.join(SAMPLERS)}")
        check_retrieval(config)
        if config["sparse_item_grad"]:
            if config["loss_type"] != "SSM":
                raise ConfigError("sparse_item_grad needs loss_type: SSM: a full softmax (CE) touches every item")
            check_lazy_adam(config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.interest_num = config["interest_num"]
        self.check_config(config)
        self.loss_type = config["loss_type"]
        sampler = config["neg_sampler"]
        self.neg_sample_factor = config["neg_sample_factor"]
        self.retrieval = config["retrieval"] or "full"
        self.sparse = bool(config["sparse_item_grad"])  # item lookups give sparse gradients (optim.LazyAdam)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0, sparse=self.sparse)
        nn.init.xavier_uniform_(self.item_embedding.weight)  # TF's default (glorot) as in the reference
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        if sampler == "popularity":
            q = item_counts(dataset, self.n_items) + 1.0  # add-one: unseen items stay possible negatives
        else:
            q = torch.ones(self.n_items)
        q[0] = 0.0
        self.register_buffer("sample_prob", q / q.sum(), persistent=False)

    def interests(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Extracts K interests per user.

        Args:
            item_seq: [B, L] left-aligned history ids.
            item_seq_len: [B] history lengths.

        Returns:
            torch.Tensor: [B, K, d].
        """
        raise NotImplementedError

    @staticmethod
    def history_mask(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Marks the real history positions, whatever the padding holds.

        Args:
            item_seq: [B, L] left-aligned history ids.
            item_seq_len: [B] history lengths.

        Returns:
            torch.Tensor: [B, L] bool, True at the first ``item_seq_len`` positions.
        """
        return torch.arange(item_seq.size(1), device=item_seq.device)[None, :] < item_seq_len[:, None]

    def forward(self, item_seq, item_seq_len):
        return self.interests(item_seq, item_seq_len)

    def calculate_loss(self, interaction):
        """The reference's training loss: label-aware readout, then full (CE) or sampled (SSM) softmax.

        Args:
            interaction: prefix-shaped rows (RecBole's prefixes or ``random_cut``).

        Returns:
            torch.Tensor: the scalar loss, a mean over the batch.
        """
        interests = self.interests(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        target = interaction[self.POS_ITEM_ID]
        user = label_aware_readout(interests, self.item_embedding(target))  # [B, d]
        if self.loss_type == "CE":
            return F.cross_entropy(user @ self.item_embedding.weight.T, target)
        num_samples = max(1, int(self.neg_sample_factor * len(target)))
        return sampled_softmax_loss(
            user, target, self.item_embedding.weight, self.sample_prob, num_samples, sparse=self.sparse
        )

    def predict(self, interaction):
        interests = self.interests(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item = self.item_embedding(interaction[self.ITEM_ID])  # [B, d]
        return torch.einsum("bkd,bd->bk", interests, item).max(dim=1).values

    def full_sort_predict(self, interaction):
        interests = self.interests(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (interests @ self.item_embedding.weight.T).max(dim=1).values  # [B, n_items]

    def query_vectors(self, interaction) -> torch.Tensor:
        """The K interests searched by :meth:`LibrarySearch.retrieve` (the reference's serving rule).

        Args:
            interaction: a batch with the history fields.

        Returns:
            torch.Tensor: [B, K, d].
        """
        return self.interests(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])


class CapsuleRecommender(MultiInterestRecommender):
    """Multi-interest extraction by dynamic routing (MIND and ComiRec-DR differ in two switches).

    Config keys (besides the base's): ``routing_iterations``, ``relu_layer``.

    Attributes:
        shared_map: one bilinear map for every position and interest (MIND) or one per position
            and interest (ComiRec-DR).
        random_init: random initial routing logits (MIND) or zeros (ComiRec-DR).
    """

    shared_map: bool = True
    random_init: bool = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.routing = CapsuleRouting(
            self.embedding_size,
            self.interest_num,
            self.max_seq_length,
            shared_map=self.shared_map,
            iterations=config["routing_iterations"],
            relu_layer=config["relu_layer"],
            random_init=self.random_init,
        )

    def interests(self, item_seq, item_seq_len):
        return self.routing(self.item_embedding(item_seq), self.history_mask(item_seq, item_seq_len))
