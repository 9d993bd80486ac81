"""ComiRec-DR: multi-interest extraction by dynamic routing with a map per position and interest.

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020,
and THUDM/ComiRec: bilinear weights of shape [1, L, K*d, d] (standard normal init), 3 routing
iterations with softmax over interests and stop-gradient on the first two, routing logits
starting at zero, no ReLU projection.
"""

from __future__ import annotations

from recbole_rimirec.model.layers import CapsuleRouting
from recbole_rimirec.model.multi_interest import MultiInterestRecommender


class ComiRecDR(MultiInterestRecommender):
    """ComiRec-DR as a RecBole sequential model.

    Config keys (besides the base's): ``routing_iterations``, ``relu_layer``.

    Args:
        config: the run's Config.
        dataset: the built train split.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.routing = CapsuleRouting(
            self.embedding_size,
            self.interest_num,
            self.max_seq_length,
            shared_map=False,
            iterations=config["routing_iterations"],
            relu_layer=config["relu_layer"],
            random_init=False,
        )

    def interests(self, item_seq, item_seq_len):
        return self.routing(self.item_embedding(item_seq), self.history_mask(item_seq, item_seq_len))
