"""SASRecAllPos: RecBole's SASRec trained with the loss at every position of one causal pass.

Reference: W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
The architecture, parameters and defaults are RecBole's ``SASRec``; only the training rows differ.
RecBole feeds one row per prefix and uses the encoder's last position; under
``train_mode: all_positions`` this model reads one row per user window and takes the
cross-entropy at every position, which (causal attention, dropout off) is the mean of the
per-prefix losses for the same weights, at a fraction of the cost. Evaluation is RecBole's full
ranking, or with ``retrieval`` other than ``full`` a top-k search over the library
(:mod:`~recbole_rimirec.model.library_search`): the same ranking, and with ``eval_from_lists`` no
dense [users x items] matrix, for libraries of a million items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_rimirec.data.loaders import epoch_weighted, packing_of
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.encoder import encode_at, encoder_input, fast_dropout, fuse_gelu
from recbole_rimirec.model.layers import popularity_distribution, resolve_negatives, sampled_softmax_loss
from recbole_rimirec.model.library_search import LibrarySearch, check_retrieval
from recbole_rimirec.optim import check_sparse_item_grad
from recbole_rimirec.trainer import RetrievalTrainer


class SASRecAllPos(LibrarySearch, SASRec):
    """RecBole's SASRec with an all-positions training path.

    Args:
        config: the run's Config (SASRec's keys; ``loss_type`` must be ``CE``).
        dataset: the train dataset.
    """

    train_modes = ("all_positions", "prefixes", "random_cut")
    trims_padding = True  # outputs at real positions ignore trailing padding (see trainer._trimmed)
    trainer_class = RetrievalTrainer  # RecBole's full ranking unless ``retrieval`` asks for search

    @classmethod
    def check_config(cls, config) -> None:
        """Checks the loss and retrieval keys; the runner calls it before reading the data.

        Args:
            config: the run's Config.

        Raises:
            ConfigError: naming the key and its value.
        """
        if config["loss_type"] != "CE":
            raise ConfigError(f"SASRecAllPos needs loss_type: CE, not {config['loss_type']}")
        check_retrieval(config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.retrieval = config["retrieval"] or "full"
        self.TARGETS = self.ITEM_ID + "_targets"
        self.negatives = resolve_negatives(config, "global_negatives", self.n_items)
        if self.negatives:
            self.register_buffer("sample_prob", popularity_distribution(dataset, self.n_items), persistent=False)
        check_sparse_item_grad(config, "SASRecAllPos")
        self.sparse = bool(config["sparse_item_grad"])
        self.item_embedding.sparse = self.sparse  # lookups give sparse gradients (optim.LazyAdam)
        fuse_gelu(self.trm_encoder)  # torch's fused GELU, the same function
        fast_dropout(self)  # the same dropout, its CPU mask drawn faster

    def encode_all(
        self, item_seq: torch.Tensor, positions: torch.Tensor | None = None, segments: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Runs the causal encoder once over left-aligned sequences (or packed rows).

        Args:
            item_seq: [B, L] item ids, 0-padded on the right.
            positions: [B, L] position of each slot in its own window (packed rows); ``None`` = 0..L-1.
            segments: [B, L] window rank of each slot (packed rows, see ``model.packing``); ``None``
                for one window per row.

        Returns:
            torch.Tensor: [B, L, H] the hidden state after each position.
        """
        return self.trm_encoder(*self.encoder_input(item_seq, positions, segments), output_all_encoded_layers=True)[-1]

    def encoder_input(
        self, item_seq: torch.Tensor, positions: torch.Tensor | None = None, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input states and attention mask (arguments as :meth:`encode_all`).

        Returns:
            (hidden, mask): [B, L, H] and RecBole's additive mask [B, 1, L, L].
        """
        return encoder_input(self, item_seq, positions, segments)

    def forward(self, item_seq, item_seq_len):
        """[B, H] the state after each user's last item (the last layer computed there only)."""
        return encode_at(self.trm_encoder, *self.encoder_input(item_seq), item_seq_len - 1)

    def query_vectors(self, interaction) -> torch.Tensor:
        """The user's one vector, searched by :meth:`LibrarySearch.retrieve`.

        Args:
            interaction: a batch with the history fields.

        Returns:
            torch.Tensor: [B, 1, H], the encoder's output at the last item.
        """
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]).unsqueeze(1)

    def calculate_loss(self, interaction):
        """Full softmax at every position that has a target; on prefix rows, RecBole's SASRec loss.

        Args:
            interaction: all-positions rows (``item_id_targets``, plain or packed) or RecBole's prefix rows.

        Returns:
            torch.Tensor: the scalar loss, a mean over the batch's targets.
        """
        if self.TARGETS not in interaction:
            return super().calculate_loss(interaction)
        targets = interaction[self.TARGETS]  # [B, L], 0 where there is no target
        hidden = self.encode_all(interaction[self.ITEM_SEQ], *packing_of(interaction, self.ITEM_SEQ))  # [B, L, H]
        keep = targets > 0
        if not keep.any():  # a batch of rows without targets (tiny batches of split or shifted rows)
            return hidden.sum() * 0.0
        h, target = hidden[keep], targets[keep]  # [N, H], [N]
        if self.negatives:  # sampled softmax over a shared popularity draw, log-Q corrected
            weight = self.item_embedding.weight
            loss = sampled_softmax_loss(h, target, weight, self.sample_prob, self.negatives, sparse=self.sparse)
        else:
            loss = F.cross_entropy(h @ self.item_embedding.weight.T, target)  # [N, n_items] logits
        return epoch_weighted(loss, keep.sum(), interaction, self.TARGETS)
