"""MostPop: the most popular training items, scored under the sequential protocol.

A reference point for the sequential models, not a paper's method. RecBole's own ``Pop`` is a
general model, which makes two differences from the sequential models it is usually listed
beside: its counter adds one per *batch* in which an item appears (``item_cnt[item] += 1`` with
repeated indices), and counts sampled negatives too, so the popular items tie at the number of
batches and the tie is broken by item id; and RecBole removes each user's training history from
a general model's ranking but not from a sequential model's. MostPop counts every training
interaction once (each user's training sequence, from the built train split) and is a
sequential model, so it is trained, split and scored exactly like SASRec, MIND or RimiRec.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.trainer import TraditionalTrainer
from recbole.utils import InputType

from recbole_rimirec.model.multi_interest import item_counts
from recbole_rimirec.trainer import make_safe


class MostPop(SequentialRecommender):
    """Scores every item by its number of training interactions, whatever the history.

    Args:
        config: the run's Config.
        dataset: the built train split.
    """

    input_type = InputType.POINTWISE
    trainer_class = make_safe(TraditionalTrainer)  # one pass, nothing to fit
    trims_padding = True  # the history is never read

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.register_buffer("counts", item_counts(dataset, self.n_items))  # [n_items]
        self.counts[0] = 0
        self.unused = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs a parameter to optimise

    def calculate_loss(self, interaction):
        return self.unused.sum() * 0.0

    def predict(self, interaction):
        return self.counts[interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        return self.counts[None, :].repeat(len(interaction[self.ITEM_SEQ]), 1)  # [B, n_items], written to by RecBole
