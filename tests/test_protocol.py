"""eval_protocol: comirec (users split 8:1:1, a held-out user's first 80% in, the rest as targets)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.config import Config
from recbole_rimirec.data.preparation import create_dataset, data_preparation
from recbole_rimirec.data.protocol import TARGETS_FIELD, cut_point, diversity, protocol_rows, split_users
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.evaluation import hit_record, topk_hits, user_metric
from recbole_rimirec.quick_start import run
from tests.conftest import DATA


@given(n=st.integers(3, 500), seed=st.integers(0, 100))
@settings(max_examples=50, deadline=None)
def test_users_are_split_8_1_1_disjoint_and_seeded(n, seed):
    users = np.arange(10, 10 + n)
    train, valid, test = split_users(users, seed)
    together = np.concatenate([train, valid, test])
    assert sorted(together.tolist()) == users.tolist()  # every user once: no user in two splits
    assert len(train) == int(0.8 * n) and len(valid) == int(0.9 * n) - int(0.8 * n)
    assert np.array_equal(split_users(users, seed)[2], test)


@pytest.mark.parametrize("n, k", [(2, 1), (5, 4), (6, 4), (10, 8), (11, 8), (100, 80)])
def test_the_input_is_the_first_80_percent(n, k):
    assert cut_point(n) == k  # int(0.8 n), as ComiRec's data iterator, at least one target


def test_held_out_rows_have_the_first_80_percent_as_history_and_the_rest_as_targets():
    # RecBole's prefix rows: a user with items s[0..n-1] has rows r = 0..n-2 predicting s[r + 1].
    seqs = {
        u: list(range(100 * u + 1, 100 * u + 1 + n)) for u, n in zip(range(1, 21), [2, 3, 5, 10, 7] * 4, strict=True)
    }
    uid, target = [], []
    for u, s in seqs.items():
        uid += [u] * (len(s) - 1)
        target += s[1:]
    uid, target = np.array(uid), np.array(target)
    train_rows, (valid_rows, valid_targets), (test_rows, test_targets) = protocol_rows(uid, target, seed=3)
    train_users = set(uid[train_rows].tolist())
    held = uid[np.r_[valid_rows, test_rows]].tolist()
    assert len(train_users) == 16 and len(held) == 4 and not train_users & set(held)
    assert set(uid[train_rows].tolist()) == train_users and len(train_rows) == sum(
        len(seqs[u]) - 1 for u in train_users
    )
    for rows, targets in ((valid_rows, valid_targets), (test_rows, test_targets)):
        for row, padded in zip(rows, targets, strict=True):
            s = seqs[int(uid[row])]
            k = cut_point(len(s))
            assert target[row] == s[k]  # the row predicts item k + 1: its history is s[:k]
            assert padded[padded > 0].tolist() == s[k:]


def test_recboles_metrics_over_a_target_set_are_comirecs_hand_worked():
    from recbole.evaluator import Evaluator
    from recbole.evaluator.collector import DataStruct

    config = Config("SASRecAllPos", "tiny", config_dict={"data_path": str(DATA), "metrics": ["Recall", "Hit", "NDCG"]})
    config["topk"] = [4]
    top = torch.tensor([[5, 3, 9, 1], [2, 4, 6, 8]])
    positive_u, positive_i = torch.tensor([0, 0, 0, 1]), torch.tensor([3, 1, 7, 10])  # user 0: 3 targets, 2 hit
    struct = DataStruct()
    struct.set("rec.topk", topk_hits(top, positive_u, positive_i, 4))
    result = Evaluator(config).evaluate(struct)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # three targets (textbook; ComiRec's code used the hits)
    assert result["recall@4"] == pytest.approx(round((2 / 3 + 0) / 2, 4))
    assert result["hit@4"] == pytest.approx(0.5)
    assert result["ndcg@4"] == pytest.approx(round(dcg / idcg / 2, 4))


def test_per_user_metrics_from_the_hit_record_are_hand_worked():
    top = torch.tensor([[5, 3, 9, 1], [2, 4, 6, 8]])
    positive_u, positive_i = torch.tensor([0, 0, 0, 1]), torch.tensor([3, 1, 7, 10])  # as above
    record = hit_record(topk_hits(top, positive_u, positive_i, 4))
    assert record == {"ranks": [[1, 3], []], "positives": [3, 1]}
    ranks, positives = record["ranks"], record["positives"]
    assert user_metric(ranks, positives, "recall@4").tolist() == pytest.approx([2 / 3, 0])
    assert user_metric(ranks, positives, "recall@2").tolist() == pytest.approx([1 / 3, 0])
    assert user_metric(ranks, positives, "hit@1").tolist() == [0, 0]
    dcg, idcg = 1 / math.log2(3) + 1 / math.log2(5), 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert user_metric(ranks, positives, "ndcg@4").tolist() == pytest.approx([dcg / idcg, 0])
    assert user_metric(ranks, positives, "ndcg@2").tolist() == pytest.approx(
        [(1 / math.log2(3)) / (1 + 1 / math.log2(3)), 0]
    )
    with pytest.raises(ValueError, match="mrr@4"):
        user_metric(ranks, positives, "mrr@4")


def test_diversity_is_the_share_of_pairs_in_different_categories():
    category = np.array([0, 1, 1, 2, 3])
    assert diversity(np.array([[1, 2, 3, 4]]), category).tolist() == [5 / 6]  # only (1, 2) share a category
    assert diversity(np.array([[1, 2]]), category).tolist() == [0.0]


@pytest.fixture
def comirec(tiny):
    return {**tiny, "eval_protocol": "comirec", "epochs": 1}


def test_no_user_is_in_two_splits_and_held_out_users_are_never_trained_on(comirec):
    config = Config("SASRecAllPos", "tiny", config_dict=comirec)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    uid = dataset.uid_field
    users = [set(split.dataset.inter_feat[uid].tolist()) for split in (train, valid, test)]
    assert not users[0] & users[1] and not users[0] & users[2] and not users[1] & users[2]
    assert len(users[2]) == len(test.dataset.inter_feat)  # one row per held-out user
    batch, _, positive_u, positive_i = next(iter(test))
    targets = batch[TARGETS_FIELD]
    assert len(positive_u) == int((targets > 0).sum()) and set(positive_i.tolist()) <= set(targets.flatten().tolist())


@pytest.mark.parametrize("model", ["RimiRec", "ComiRecSA", "SASRecAllPos", "SASRec", "MostPop"])
def test_every_sequential_model_runs_under_the_protocol(comirec, model):
    extra = {"tree_branching": 8, "tree_leaf_size": 10, "tree_vector_dim": 16} if model == "RimiRec" else {}
    result = run(model, "tiny", config_dict={**comirec, **extra})
    assert {"recall@20", "recall@50", "hit@20", "hit@50", "ndcg@20", "ndcg@50"} <= set(result["test_result"])
    hits = result["test_hits"]  # per user: the means are RecBole's figures, so a paired bootstrap can use them
    for metric in ("recall@20", "hit@50", "ndcg@20", "ndcg@50"):
        mean = user_metric(hits["ranks"], hits["positives"], metric).mean()
        assert mean == pytest.approx(result["test_result"][metric], abs=6e-5)


def test_protocol_mistakes_are_one_line(comirec):
    with pytest.raises(ConfigError, match="eval_protocol 'nope' is not one of leave_one_out, comirec"):
        run("SASRecAllPos", "tiny", config_dict={**comirec, "eval_protocol": "nope"})
    with pytest.raises(ConfigError, match="sequential models only"):
        run("Pop", "tiny", config_dict=comirec)


def test_a_known_dataset_is_downloaded_once_and_offline_is_one_line(tmp_path, monkeypatch):
    import urllib.error
    import zipfile

    from recbole_rimirec.data import preparation

    folder = str(tmp_path / "ml-1m")

    def offline(url, into):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(preparation, "download_url", offline)
    with pytest.raises(ConfigError, match=r"dataset 'ml-1m' is not in .* could not be downloaded from https://"):
        preparation.download_known("ml-1m", folder)

    def fake(url, into):  # what RecBole serves: a zip of atomic files named after the archive
        import os

        os.makedirs(into, exist_ok=True)
        path = os.path.join(into, "ml-1m.zip")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("ml-1m.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t1\n")
        return path

    monkeypatch.setattr(preparation, "download_url", fake)
    preparation.download_known("ml-1m", folder)
    assert (tmp_path / "ml-1m" / "ml-1m.inter").is_file() and not (tmp_path / "ml-1m" / "ml-1m.zip").exists()
    preparation.download_known("no-such-recbole-dataset", folder)  # unknown names are left to the caller


def test_diversity_field_adds_diversity_at_n(comirec):
    result = run("SASRecAllPos", "tiny", config_dict={**comirec, "diversity_field": "circle"})
    for k in (10, 20, 50):
        assert 0 <= result["test_result"][f"diversity@{k}"] <= 1
    with pytest.raises(ConfigError, match="diversity_field 'nope' is not an item token field"):
        run("SASRecAllPos", "tiny", config_dict={**comirec, "diversity_field": "nope"})
