"""Top-k metrics from retrieved lists: the same figures as RecBole's Collector on dense scores."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.evaluation import list_metric_problem, topk_hits
from recbole_rimirec.quick_start import run

TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}


def dense_topk(scores, positive_u, positive_i, k):
    """RecBole 1.2.1's Collector, rec.topk (collector.py), on a dense score matrix."""
    _, topk_idx = torch.topk(scores, k, dim=-1)
    pos_matrix = torch.zeros_like(scores, dtype=torch.int)
    pos_matrix[positive_u, positive_i] = 1
    return torch.cat((torch.gather(pos_matrix, 1, topk_idx), pos_matrix.sum(1, keepdim=True)), 1)


@given(seed=st.integers(0, 10_000), k=st.integers(1, 12), positives=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_hits_from_lists_equal_the_collectors_from_dense_scores(seed, k, positives):
    g = torch.Generator().manual_seed(seed)
    B, n = 6, 30
    scores = torch.randn(B, n, generator=g)
    scores[:, 0] = float("-inf")  # padding, as the hooks leave it
    positive_u = torch.arange(B).repeat_interleave(positives)
    positive_i = torch.randint(1, n, (B * positives,), generator=g)  # duplicates allowed: they count once
    top_ids = scores.topk(k, dim=1).indices
    assert torch.equal(topk_hits(top_ids, positive_u, positive_i, k), dense_topk(scores, positive_u, positive_i, k))


def test_short_lists_and_empty_slots_never_hit():
    top_ids = torch.tensor([[3, -1, -1], [0, 2, 5]])  # -1: nothing retrieved; 0: padding
    hits = topk_hits(top_ids, torch.tensor([0, 0, 1]), torch.tensor([3, 4, 5]), k=4)
    assert hits.tolist() == [[1, 0, 0, 0, 2], [0, 0, 1, 0, 1]]


def test_metrics_that_need_every_score_are_named():
    assert list_metric_problem(["Recall", "NDCG", "Hit", "MRR", "Precision", "ItemCoverage"]) is None
    assert "GAUC" in list_metric_problem(["Recall", "GAUC"])


@pytest.mark.parametrize("model, extra", [("RimiRec", TREE), ("ComiRecSA", {"retrieval": "exact"})])
def test_runs_score_the_same_from_lists(tiny, model, extra):
    dense = run(model, "tiny", config_dict={**tiny, **extra, "epochs": 1})
    lists = run(model, "tiny", config_dict={**tiny, **extra, "epochs": 1, "eval_from_lists": True})
    assert lists["test_result"] == dense["test_result"]
    assert lists["test_ranks"] == dense["test_ranks"]


def test_eval_from_lists_refuses_a_metric_it_cannot_compute(tiny):
    with pytest.raises(ConfigError, match="eval_from_lists: metric GAUC needs every item's score"):
        run("RimiRec", "tiny", config_dict={**tiny, **TREE, "eval_from_lists": True, "metrics": ["Recall", "GAUC"]})
