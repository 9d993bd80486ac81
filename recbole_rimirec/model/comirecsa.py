"""ComiRec-SA: multi-interest extraction by self-attention, one head per interest.

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020,
and THUDM/ComiRec: ``A = softmax_L(W2 tanh(W1 (H + P)))`` with K heads and a masked softmax over
positions (padding gets no weight); the interests are ``A H`` (positions enter the attention only).
"""

from __future__ import annotations

from recbole_rimirec.model.layers import SelfAttentiveInterests
from recbole_rimirec.model.multi_interest import MultiInterestRecommender


class ComiRecSA(MultiInterestRecommender):
    """ComiRec-SA as a RecBole sequential model.

    Config keys (besides the base's): ``hidden_size`` (the tanh layer is 4 x hidden_size wide).

    Args:
        config: the run's Config.
        dataset: the built train split.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.extractor = SelfAttentiveInterests(
            self.embedding_size, self.interest_num, self.max_seq_length, 4 * config["hidden_size"]
        )

    def interests(self, item_seq, item_seq_len):
        return self.extractor(self.item_embedding(item_seq), self.history_mask(item_seq, item_seq_len))
