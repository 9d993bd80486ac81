"""MIND: multi-interest extraction by capsule routing with one shared bilinear map.

Reference: C. Li et al., "Multi-Interest Network with Dynamic Routing for Recommendation at
Tmall", CIKM 2019, as implemented in THUDM/ComiRec (KDD 2020): 3 routing iterations, routing
softmax over the interest axis, stop-gradient on the first two, ReLU projection, initial routing
logits drawn at random on every training pass; at evaluation one fixed draw, saved with the
weights, so metrics repeat (zeros would make every capsule identical under the shared map).
"""

from __future__ import annotations

from recbole_rimirec.model.multi_interest import CapsuleRecommender


class MIND(CapsuleRecommender):
    """MIND as a RecBole sequential model (config keys: see :class:`CapsuleRecommender`)."""

    shared_map = True
    random_init = True
