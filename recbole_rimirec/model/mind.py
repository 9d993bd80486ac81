"""MIND: multi-interest extraction by capsule routing with one shared bilinear map.

Reference: C. Li et al., "Multi-Interest Network with Dynamic Routing for Recommendation at
Tmall", CIKM 2019, as implemented in THUDM/ComiRec (KDD 2020): 3 routing iterations, routing
softmax over the interest axis, stop-gradient on the first two, ReLU projection, initial routing
logits drawn at random while training (zeros at evaluation, so metrics repeat).
"""

from __future__ import annotations

from recbole_rimirec.model.layers import CapsuleRouting
from recbole_rimirec.model.multi_interest import MultiInterestRecommender


class MIND(MultiInterestRecommender):
    """MIND as a RecBole sequential model.

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
            shared_map=True,
            iterations=config["routing_iterations"],
            relu_layer=config["relu_layer"],
            random_init=True,
        )

    def interests(self, item_seq, item_seq_len):
        return self.routing(self.item_embedding(item_seq), self.history_mask(item_seq, item_seq_len))
