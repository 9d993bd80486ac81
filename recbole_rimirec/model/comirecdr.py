"""ComiRec-DR: multi-interest extraction by dynamic routing with a map per position and interest.

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020,
and THUDM/ComiRec: bilinear weights of shape [1, L, K*d, d] (standard normal init), 3 routing
iterations with softmax over interests and stop-gradient on the first two, routing logits
starting at zero, no ReLU projection.
"""

from __future__ import annotations

from recbole_rimirec.model.multi_interest import CapsuleRecommender


class ComiRecDR(CapsuleRecommender):
    """ComiRec-DR as a RecBole sequential model (config keys: see :class:`CapsuleRecommender`)."""

    shared_map = False
    random_init = False
