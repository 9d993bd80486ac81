"""MIND, ComiRecDR, ComiRecSA: masks, planted interests, and the reference's scoring rule."""

import numpy as np
import pytest
import torch

from recbole_rimirec.config import Config
from recbole_rimirec.data.preparation import create_dataset, data_preparation
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.layers import AUTO_EXACT_MAX_ITEMS, AUTO_NEGATIVES, resolve_negatives, sampled_softmax_loss
from recbole_rimirec.quick_start import run
from recbole_rimirec.retrieval.merge import merge_topk, per_source_topk
from tests.test_rimirec import TREE

MODELS = ["MIND", "ComiRecDR", "ComiRecSA"]


def build(name, tiny, **extra):
    config = Config(name, "tiny", config_dict={**tiny, **extra})
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return config, config.model_class(config, train._dataset), test


@pytest.mark.parametrize("name", MODELS)
def test_padding_changes_nothing(name, tiny):
    _, model, _ = build(name, tiny)
    model.eval()
    seq = torch.randint(1, model.n_items, (6, model.max_seq_length))
    length = torch.tensor([1, 2, 3, 5, 7, model.max_seq_length])
    pad = torch.arange(model.max_seq_length)[None, :] >= length[:, None]
    a = model.interests(seq.masked_fill(pad, 0), length)
    b = model.interests(torch.where(pad, torch.randint(1, model.n_items, seq.shape), seq), length)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("name", MODELS)
def test_full_sort_equals_per_interest_topn_merged(name, tiny):
    _, model, test = build(name, tiny)
    model.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        full = model.full_sort_predict(batch)  # max over interests
        interests = model.interests(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        per_interest = interests @ model.item_embedding.weight.T  # [B, K, n_items]
    merged_s, merged_i = merge_topk(*per_source_topk(per_interest, 20), 20)
    top_s, top_i = full.topk(20, dim=1)
    assert torch.allclose(merged_s, top_s, atol=1e-5)
    ties = torch.isclose(full.gather(1, merged_i), top_s, atol=1e-5)
    assert ties.all()  # same items, up to exact ties
    batch.update(type(batch)({model.ITEM_ID: top_i[:, 0]}))
    with torch.no_grad():
        assert torch.allclose(model.predict(batch), top_s[:, 0], atol=1e-5)  # predict agrees with full sort


def test_sampled_softmax_estimates_the_full_softmax():
    torch.manual_seed(0)
    n, d = 12, 8
    weight, user = torch.randn(n, d), torch.randn(5, d)
    target = torch.randint(1, n, (5,))
    q = torch.ones(n)
    q[0] = 0
    q /= q.sum()
    # The corrected negatives estimate the full partition function; the positive's own correction
    # (TensorFlow's, which the reference uses) shifts the loss by log(S q(target)).
    full = torch.nn.functional.cross_entropy(user @ weight[1:].T, target - 1)
    sampled = torch.stack([sampled_softmax_loss(user, target, weight, q, 4000) for _ in range(20)]).mean()
    assert abs(sampled.item() - torch.log(4000 * q[1]).item() - full.item()) < 0.05


def planted_separation(model, dataset, flat, offsets):
    """Share of users whose two planted sub-circles are served by two different interests.

    Cluster c is served by the interest with the highest mean score over c's items; the two
    interests must differ, and each must score its own cluster above the other one.
    """
    emb = model.item_embedding.weight.detach()
    tokens = dataset.field2id_token[dataset.iid_field]
    sub_of = np.array([-1] + [(int(t[1:]) - 1) // 10 for t in tokens[1:]])
    hits, total = 0, 0
    L = model.max_seq_length
    for k in range(len(offsets) - 1):
        seq = flat[offsets[k] : offsets[k + 1]][-L:]
        subs, counts = np.unique(sub_of[seq], return_counts=True)
        if len(subs) < 2:
            continue
        a, b = subs[np.argsort(-counts)[:2]]
        padded = torch.zeros(1, L, dtype=torch.long)
        padded[0, : len(seq)] = torch.from_numpy(seq)
        with torch.no_grad():
            interests = model.interests(padded, torch.tensor([len(seq)]))[0]  # [K, d]
        score = interests @ emb.T  # [K, n_items]
        ka = score[:, torch.from_numpy(sub_of == a)].mean(1).argmax()
        kb = score[:, torch.from_numpy(sub_of == b)].mean(1).argmax()
        own_a = score[ka, torch.from_numpy(sub_of == a)].mean() > score[ka, torch.from_numpy(sub_of == b)].mean()
        own_b = score[kb, torch.from_numpy(sub_of == b)].mean() > score[kb, torch.from_numpy(sub_of == a)].mean()
        hits += int(ka != kb and own_a and own_b)
        total += 1
    return hits / total


@pytest.mark.parametrize("name, epochs", [("MIND", 20), ("ComiRecDR", 30), ("ComiRecSA", 15)])
def test_planted_interests_separate_and_beat_pop(name, epochs, tiny):
    from recbole_rimirec.data.loaders import train_sequences

    settings = {**tiny, "epochs": epochs, "stopping_step": epochs, "embedding_size": 16, "interest_num": 4}
    settings["learning_rate"] = 0.01
    result = run(name, "tiny", config_dict=settings)
    pop = run("Pop", "tiny", config_dict=tiny)
    _, model, test = build(name, settings)
    untrained = planted_separation(model.eval(), test._dataset, *train_sequences(test._dataset)[1:])
    model.load_state_dict(torch.load(result["checkpoint"], weights_only=True)["state_dict"])
    # The test rows (history + held-out item) give each user's whole recent sequence.
    trained = planted_separation(model.eval(), test._dataset, *train_sequences(test._dataset)[1:])
    print(
        f"{name}: separation {untrained:.2f} -> {trained:.2f}, recall@20 {result['test_result']['recall@20']:.3f}"
        f" vs Pop {pop['test_result']['recall@20']:.3f}"
    )
    assert result["test_result"]["recall@20"] > 1.5 * pop["test_result"]["recall@20"]
    # ComiRec-DR's random per-interest maps already split clusters before training (about 0.6 here).
    assert trained > 0.6 and trained > untrained


def test_random_cut_training_runs(tiny):
    result = run("ComiRecSA", "tiny", config_dict={**tiny, "train_mode": "random_cut", "epochs": 1})
    assert result["train_mode"] == "random_cut" and result["timings"]["epochs"] == 1


@pytest.mark.parametrize("backend", ["faiss", "exact"])
def test_ann_evaluation_matches_full_ranking(tiny, backend):
    from recbole_rimirec.quick_start import evaluate_saved

    result = run("ComiRecSA", "tiny", config_dict={**tiny, "epochs": 3, "embedding_size": 16})
    ann = evaluate_saved(result["checkpoint"], {"retrieval": backend})
    assert ann["result"] == pytest.approx(result["test_result"], abs=2e-3)  # the same lists, up to exact ties
    assert ann["nodes_per_user"] == 4 and ann["library_fraction"] == pytest.approx(4.0)


@pytest.mark.parametrize("key", ["global_negatives", "tower_negatives"])
def test_auto_negatives_are_exact_up_to_the_threshold_and_sampled_beyond(key):
    small, large = {key: "auto"}, {key: "auto"}
    assert resolve_negatives(small, key, AUTO_EXACT_MAX_ITEMS) == 0
    assert small[key] is None  # written back: the run's config says what it used
    assert resolve_negatives(large, key, AUTO_EXACT_MAX_ITEMS + 1) == AUTO_NEGATIVES[key]
    assert large[key] == AUTO_NEGATIVES[key]


@pytest.mark.parametrize("value, expected", [(None, 0), (1, 1), (4096, 4096)])
def test_set_negatives_are_kept_whatever_the_library(value, expected):
    for n_items in (10, 10_000_000):
        config = {"global_negatives": value}
        assert resolve_negatives(config, "global_negatives", n_items) == expected
        assert config["global_negatives"] == value


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "all"])
def test_bad_negatives_name_the_key_and_the_choices(value, tiny):
    with pytest.raises(ConfigError, match="global_negatives must be auto, ~ .* not"):
        resolve_negatives({"global_negatives": value}, "global_negatives", 100)
    with pytest.raises(ConfigError, match="tower_negatives must be auto, ~ .* not"):  # RimiRec's check before the data
        run("RimiRec", "tiny", config_dict={**tiny, **TREE, "tower_negatives": value})
