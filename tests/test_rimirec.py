"""RimiRec end to end on the tiny set: the dataset hook, leakage, the evaluation hook, the generator."""

import json
import shutil

import numpy as np
import pytest
import torch

from recbole_rimirec.config import Config
from recbole_rimirec.data.preparation import create_dataset, data_preparation
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.quick_start import run
from recbole_rimirec.utils import get_trainer

TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}


@pytest.fixture
def small(tiny):
    return {**tiny, **TREE}


def prepare(settings, model="RimiRec"):
    config = Config(model, "tiny", config_dict=settings)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    net = config.model_class(config, train._dataset)
    return config, dataset, net, train, valid, test


def test_end_to_end_writes_retrieval_fields(small, tmp_path):
    import run_rimirec

    out = tmp_path / "r.json"
    args = [f"--{k}={v}" for k, v in small.items()]
    assert run_rimirec.main(["-m", "RimiRec", "-d", "tiny", "--out", str(out), *args]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "RimiRec" and result["train_mode"] == "all_positions"
    assert result["all_positions_stride"] == 5  # overlapping windows: RimiRec's default (README, Training modes)
    assert 1 <= result["nodes_per_user"] <= 20
    assert 0.1 < result["library_fraction"] <= 0.2 + 1e-9  # the budget is an upper bound
    assert result["retrieval_ms_per_user"] > 0 and result["index_s"] > 0
    assert result["test_result"]["hit@50"] > 0


def test_codes_are_attached_to_items_with_padding_row(small):
    _, dataset, net, _, _, test = prepare(small)
    codes = dataset.item_feat["tree_code"]
    assert codes.shape == (dataset.item_num, dataset.tree.depth)
    assert (codes[0] == 0).all() and (codes[1:, 0] > 0).all()
    ids = dataset.item_feat[dataset.iid_field]
    assert torch.equal(codes, torch.from_numpy(dataset.tree.codes)[ids])
    batch = next(iter(test))[0]
    assert "tree_code" in batch  # eval batches do carry the target's codes (RecBole's join)...


def test_permuting_target_codes_leaves_evaluation_unchanged(small):
    config, dataset, net, _, _, test = prepare(small)
    trainer = get_trainer(config["MODEL_TYPE"], "RimiRec", config.model_class)(config, net)
    trainer.evaluate(test, load_best_model=False)  # sets up the trainer's item count
    batch = next(iter(test))
    net.eval()
    net.build_index()
    before = trainer._full_sort_batch_eval(batch)[1].clone()
    codes = dataset.item_feat["tree_code"]
    dataset.item_feat.interaction["tree_code"] = codes[torch.randperm(len(codes))]  # ...which the model ignores
    batch = next(iter(test))
    after = trainer._full_sort_batch_eval(batch)[1]
    assert not torch.equal(batch[0]["tree_code"], codes[batch[0][dataset.iid_field]])
    assert torch.equal(before, after)


def test_tree_ignores_valid_and_test_interactions(small, tmp_path):
    from tests.conftest import DATA

    lines = (DATA / "tiny" / "tiny.inter").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    last_two = {}
    for k, (u, _, _) in enumerate(rows):
        last_two.setdefault(u, []).append(k)
    rng = np.random.default_rng(0)
    for ks in last_two.values():
        for k in ks[-2:]:  # leave-one-out: valid and test targets
            rows[k][1] = f"i{rng.integers(1, 121)}"
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "tiny.inter").write_text("\n".join([lines[0]] + ["\t".join(r) for r in rows]) + "\n")
    shutil.copy(DATA / "tiny" / "tiny.item", tmp_path / "tiny" / "tiny.item")
    _, a, *_ = prepare(small)
    _, b, *_ = prepare({**small, "data_path": str(tmp_path)})
    tok_a = a.field2id_token[a.iid_field]
    tok_b = b.field2id_token[b.iid_field]
    assert set(tok_a) == set(tok_b)
    leaf_a = {t: a.tree.leaf_of[i] for i, t in enumerate(tok_a)}
    leaf_b = {t: b.tree.leaf_of[i] for i, t in enumerate(tok_b)}
    # the same items end up grouped together (node ids may differ only if ids were remapped)
    groups_a = {frozenset(t for t in tok_a if leaf_a[t] == leaf) for leaf in set(leaf_a.values())}
    groups_b = {frozenset(t for t in tok_b if leaf_b[t] == leaf) for leaf in set(leaf_b.values())}
    assert groups_a == groups_b


def test_tree_file_round_trip_and_mismatch(small, tmp_path):
    path = str(tmp_path / "tree.npz")
    _, a, *_ = prepare({**small, "tree_file": path})
    _, b, *_ = prepare({**small, "tree_file": path})
    assert np.array_equal(a.tree.codes, b.tree.codes)
    with pytest.raises(ConfigError, match="built with other branching"):
        prepare({**small, "tree_file": path, "tree_branching": 4})
    with pytest.raises(ConfigError, match="built with other vector_dim"):
        prepare({**small, "tree_file": path, "tree_vector_dim": 8})


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_hook_loses_nothing_with_global_scores_and_every_node(small, backend):
    settings = {
        **small,
        "retrieval_score": "global",
        "select_budget": 1.0,
        "retrieval": backend,
        "select_method": "frontier",
    }
    config, _, net, _, _, test = prepare(settings)
    net.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        plain = net.full_sort_predict(batch)
        plain[:, 0] = float("-inf")
        top_s, top_i, nodes, items = net.retrieve(batch, 50)
    assert (nodes == 1).all() and (items == int(net.tree.size[0])).all()  # the root: the whole library
    expect = plain.topk(50, dim=1)
    assert torch.allclose(top_s, expect.values, atol=1e-5)
    assert torch.isclose(plain.gather(1, top_i), expect.values, atol=1e-5).all()


@pytest.mark.parametrize("subcluster_size", [None, 3])  # sub-clusters: every part of every leaf chosen
def test_every_leaf_selected_gives_the_full_factorised_ranking(small, subcluster_size):
    """select_method leaves, the whole library: the merged list is the top of alpha log P(leaf) + log softmax in it."""
    settings = {**small, "select_method": "leaves", "select_budget": 1.0, "select_max_nodes": 10_000}
    settings["subcluster_size"] = subcluster_size
    settings["retrieval_score"] = "factorized"
    _, _, net, _, _, test = prepare({**settings, "retrieval": "exact"})
    net.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        top_s, top_i, nodes, items = net.retrieve(batch, 50)
        h = net.forward(batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN])  # [B, H]
        log_p = net.generator(h)  # [B, N]
        full = torch.full((len(h), net.n_items), float("-inf"))
        for leaf in net.tree.is_leaf.nonzero().squeeze(1).tolist():
            items_of = net.tree.perm[int(net.tree.lo[leaf]) : int(net.tree.hi[leaf])]
            u = net.tower.user(h, torch.full((len(h),), leaf))  # [B, H]
            s = u @ net.item_embedding.weight[items_of].T  # [B, |leaf|]
            full[:, items_of] = net.alpha * log_p[:, leaf : leaf + 1] + s.log_softmax(1)
    assert (items == int(net.tree.size[0])).all() and (nodes == int(net.tree.is_leaf.sum())).all()
    assert (net.split is not None) == (subcluster_size is not None)
    if subcluster_size:
        assert len(net.split.size) > int(net.tree.is_leaf.sum())  # leaves really cut into parts
    expect = full.topk(50, dim=1)
    assert torch.allclose(top_s, expect.values, atol=1e-4)
    assert torch.allclose(full.gather(1, top_i), expect.values, atol=1e-4)


def test_prior_score_is_the_global_head_plus_the_leafs_log_probability(small):
    settings = {**small, "select_method": "leaves", "select_budget": 1.0, "select_max_nodes": 10_000}
    _, _, net, _, _, test = prepare({**settings, "retrieval": "exact", "retrieval_score": "prior", "alpha": 0.5})
    net.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        top_s, top_i, _, _ = net.retrieve(batch, 50)
        h = net.forward(batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN])
        full = h @ net.item_embedding.weight.T + 0.5 * net.generator(h)[:, net.tree.leaf]  # [B, n_items]
        full[:, 0] = float("-inf")
    expect = full.topk(50, dim=1)
    assert torch.allclose(top_s, expect.values, atol=1e-4)
    assert torch.allclose(full.gather(1, top_i), expect.values, atol=1e-4)


@pytest.mark.parametrize("backend", ["exact", "faiss"])  # leaves of <= 10 items: Faiss's normaliser is exact too
def test_mixed_score_is_the_factorised_score_plus_beta_times_the_global_head(small, backend):
    settings = {**small, "select_method": "leaves", "select_budget": 1.0, "select_max_nodes": 10_000}
    mixed = {"retrieval": backend, "retrieval_score": "mixed", "global_score_weight": 0.7, "alpha": 0.5}
    _, _, net, _, _, test = prepare({**settings, **mixed})
    net.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        top_s, top_i, _, _ = net.retrieve(batch, 50)
        h = net.forward(batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN])  # [B, H]
        log_p = net.generator(h)  # [B, N]
        full = torch.full((len(h), net.n_items), float("-inf"))
        for leaf in net.tree.is_leaf.nonzero().squeeze(1).tolist():
            items_of = net.tree.perm[int(net.tree.lo[leaf]) : int(net.tree.hi[leaf])]
            v = net.item_embedding.weight[items_of]  # [|leaf|, H]
            within = (net.tower.user(h, torch.full((len(h),), leaf)) @ v.T).log_softmax(1)  # [B, |leaf|]
            full[:, items_of] = 0.5 * log_p[:, leaf : leaf + 1] + within + 0.7 * h @ v.T
    expect = full.topk(50, dim=1)
    assert torch.allclose(top_s, expect.values, atol=1e-4)
    assert torch.allclose(full.gather(1, top_i), expect.values, atol=1e-4)


def test_mixed_score_weight_is_checked(small):
    with pytest.raises(ConfigError, match="global_score_weight must be a number >= 0"):
        prepare({**small, "retrieval_score": "mixed", "global_score_weight": -1})


def test_factorized_scores_exact_vs_faiss_agree_on_small_nodes(small):
    # Leaves of <= 10 items and k = 50: Faiss returns whole nodes, so its normaliser is exact too.
    settings = {**small, "select_budget": 0.05}
    _, _, net, _, _, test = prepare({**settings, "retrieval": "exact"})
    batch = next(iter(test))[0]
    net.eval()
    exact = net.retrieve(batch, 50)
    net.backend = "faiss"
    net.build_index()
    approx = net.retrieve(batch, 50)
    assert torch.allclose(exact[0], approx[0], atol=1e-4)


@pytest.mark.parametrize("decoder", [False, True])
def test_generator_finds_the_next_items_sub_circle(small, decoder):
    settings = {**small, "epochs": 12, "stopping_step": 12, "learning_rate": 0.005, "generator_decoder": decoder}
    result = run("RimiRec", "tiny", config_dict=settings)
    config, dataset, net, train, _, test = prepare(settings)
    net.load_state_dict(torch.load(result["checkpoint"], weights_only=True)["state_dict"])
    net.eval()
    leaf = net.tree.leaf
    leaves = net.tree.is_leaf.nonzero().squeeze(1)
    from recbole_rimirec.data.loaders import train_sequences

    _, flat, _ = train_sequences(train._dataset)
    popular = torch.bincount(leaf[torch.from_numpy(flat)], minlength=net.tree.num_nodes)[leaves]
    B = 2
    pop_top = set(leaves[popular.topk(B).indices].tolist())
    gen_hits = pop_hits = total = 0
    for batch in test:
        inter = batch[0]
        with torch.no_grad():
            lp = net.generator(net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN]))[:, leaves]
        top = leaves[lp.topk(B, dim=1).indices]  # [U, B]
        target_leaf = leaf[inter[net.ITEM_ID]]
        gen_hits += int((top == target_leaf[:, None]).any(1).sum())
        pop_hits += sum(int(t) in pop_top for t in target_leaf)
        total += len(target_leaf)
    print(f"target leaf in top-{B}: generator {gen_hits / total:.2f}, most popular leaves {pop_hits / total:.2f}")
    assert gen_hits / total > 2 * pop_hits / total and gen_hits / total > 0.5


def test_beam_selection_runs_and_a_huge_beam_keeps_every_leaf(small):
    _, _, net, _, _, test = prepare({**small, "select_method": "beam", "beam_size": 10_000})
    net.eval()
    batch = next(iter(test))[0]
    _, _, nodes, items = net.retrieve(batch, 50)
    assert (items == int(net.tree.size[0])).all() and (nodes == int(net.tree.is_leaf.sum())).all()
    with pytest.raises(ConfigError, match="beam_size"):
        prepare({**small, "select_method": "beam", "beam_size": 0})


def test_feature_tree_recovers_the_planted_sub_circles(small):
    from sklearn.metrics import adjusted_rand_score

    settings = {**small, "tree_vectors": "features", "tree_feature_fields": ["circle", "sub_circle"]}
    _, dataset, _, _, _, _ = prepare(settings)
    tokens = dataset.field2id_token[dataset.iid_field]
    planted = np.array([-1] + [(int(t[1:]) - 1) // 10 for t in tokens[1:]])  # i1..i120: 10 items per sub-circle
    assert adjusted_rand_score(planted[1:], dataset.tree.leaf_of[1:]) > 0.9
    both = prepare({**settings, "tree_vectors": "cooccurrence+features"})[1].tree
    assert adjusted_rand_score(planted[1:], both.leaf_of[1:]) > 0.5


def test_tree_vectors_join_parts_with_a_plus(small, tmp_path):
    """cooccurrence+pretrained: both parts shape the leaves (a pretrained grouping unrelated to the circles)."""
    from sklearn.metrics import adjusted_rand_score

    tokens = [f"i{i}" for i in range(1, 121)]
    circles = np.arange(120) // 10  # i1..i120: the sub-circles users stay in (co-occurrence sees them)
    grouping = np.random.default_rng(1).permutation(circles)  # what the pretrained file plants instead
    vectors = np.eye(12)[grouping] * 4 + np.random.default_rng(0).normal(size=(120, 12)) * 0.1
    path = str(tmp_path / "planted.npz")
    np.savez(path, tokens=np.array(tokens), vectors=vectors)
    ari = {}
    for source in ("cooccurrence", "pretrained", "cooccurrence+pretrained"):
        dataset = prepare({**small, "tree_vectors": source, "tree_vectors_file": path})[1]
        leaves = dataset.tree.leaf_of[dataset.token2id(dataset.iid_field, tokens)]
        ari[source] = (adjusted_rand_score(circles, leaves), adjusted_rand_score(grouping, leaves))
    assert ari["cooccurrence"][0] > 0.8 and ari["cooccurrence"][1] < 0.05
    assert ari["pretrained"][1] > 0.9 and ari["pretrained"][0] < 0.05
    assert ari["cooccurrence+pretrained"][0] > 0.1 and ari["cooccurrence+pretrained"][1] > 0.3
    with pytest.raises(ConfigError, match="tree_vectors 'cooccurrence\\+bogus'"):
        prepare({**small, "tree_vectors": "cooccurrence+bogus"})
    with pytest.raises(ConfigError, match="cooccurrence\\+pretrained needs tree_vectors_file"):
        prepare({**small, "tree_vectors": "cooccurrence+pretrained"})


def test_unknown_feature_field_is_one_line_error(small):
    with pytest.raises(ConfigError, match="tree_feature_fields.*genre"):
        prepare({**small, "tree_vectors": "features", "tree_feature_fields": ["genre"]})


def test_distillation_reaches_the_generator(small):
    """generator_distill_weight alone (no path NLL) trains the generator: its loss has a gradient there."""
    _, _, net, train, _, _ = prepare({**small, "generator_loss_weight": 0.0})
    batch = next(iter(train))
    for weight, moves in ((0.0, False), (1.0, True)):
        net.distill_weight = weight
        net.zero_grad()
        net.calculate_loss(batch).backward()
        grad = net.generator.node_embedding.weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == moves


def test_generator_detach_keeps_the_path_loss_out_of_the_encoder(small):
    """generator_detach: the path NLL still trains the generator's nodes but gives the encoder no gradient."""
    only_path = {**small, "global_loss_weight": 0.0, "tower_negatives": None}
    for detach in (False, True):
        _, _, net, train, _, _ = prepare({**only_path, "generator_detach": detach})
        batch = next(iter(train))
        net.tower.loss = lambda h, target, weight: h.sum() * 0.0  # the path loss alone reaches the encoder
        net.zero_grad()
        net.calculate_loss(batch).backward()
        nodes = net.generator.node_embedding.weight.grad
        encoder = [p.grad for p in net.trm_encoder.parameters() if p.grad is not None]
        assert nodes is not None and bool(nodes.abs().sum() > 0)
        assert any(bool(g.abs().sum() > 0) for g in encoder) != detach


def test_scalable_losses_train_end_to_end(small):
    from recbole_rimirec.quick_start import run

    result = run("RimiRec", "tiny", config_dict={**small, "global_negatives": 32, "tower_negatives": 4})
    assert result["test_result"]["hit@50"] > 0
    with pytest.raises(ConfigError, match="tower_negatives"):
        run("RimiRec", "tiny", config_dict={**small, "tower_negatives": 0})


@pytest.mark.parametrize("backend", ["exact", "faiss"])  # sub-clusters of <= 3 items: Faiss's normaliser is exact
def test_subclusters_rank_their_items_by_the_mixed_score_over_what_is_searched(small, backend):
    """subcluster_size: the mixed score over the chosen sub-clusters, log Z over the searched part of each leaf."""
    sub = {"subcluster_size": 3, "subcluster_pool": 0.5, "select_method": "density", "retrieval": backend}
    mixed = {"retrieval_score": "mixed", "global_score_weight": 0.7, "alpha": 0.5}
    _, _, net, _, _, test = prepare({**small, **sub, **mixed})
    net.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        net.build_index()
        found = net.candidates(batch, 50)
        top_s, top_i, nodes, items = net.retrieve(batch, 50)
        h = net.forward(batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN])  # [B, H]
        log_p = net.generator(h)  # [B, N]
        split = net.split
        chosen = torch.zeros(len(h), len(split.size), dtype=torch.bool)  # [B, C]
        chosen[found["chosen"]] = True
        assert torch.equal(items, chosen.long() @ split.size)  # the items searched per user
        full = torch.full((len(h), net.n_items), float("-inf"))
        for b in range(len(h)):
            for leaf in split.leaf[chosen[b]].unique().tolist():
                parts = (chosen[b] & (split.leaf == leaf)).nonzero().squeeze(1).tolist()
                items_of = torch.cat([split.perm[int(split.lo[c]) : int(split.hi[c])] for c in parts])
                v = net.item_embedding.weight[items_of]  # [S, H]
                within = (net.tower.user(h[b : b + 1], torch.tensor([leaf])) @ v.T).log_softmax(1)[0]  # [S]
                full[b, items_of] = 0.5 * log_p[b, leaf] + within + 0.7 * h[b] @ v.T
    assert (items == chosen.long() @ split.size).all() and (items <= round(0.2 * int(net.tree.size[0]))).all()
    assert (nodes == found["selected"].sum(1)).all()
    expect = full.topk(50, dim=1)
    finite = torch.isfinite(expect.values)
    assert torch.allclose(top_s[finite], expect.values[finite], atol=1e-4)
    assert torch.equal(top_i == -1, ~finite)


def test_subclusters_as_large_as_the_library_change_nothing(small):
    _, _, net, _, _, test = prepare({**small, "select_method": "density", "subcluster_size": None})
    net.eval()
    batch = next(iter(test))[0]
    plain = net.retrieve(batch, 20)
    assert net.split is None
    net.subcluster_size, net.subcluster_pool = 10**6, net.budget
    net.build_index()
    split = net.retrieve(batch, 20)
    assert net.split is not None and all(torch.equal(a, b) for a, b in zip(plain, split, strict=True))


@pytest.mark.parametrize("subclusters", [None, 3])
def test_a_budget_in_items_is_the_same_budget_as_its_fraction(small, subclusters):
    settings = {**small, "select_method": "density", "subcluster_size": subclusters, "subcluster_pool": 0.5}
    _, _, net, _, _, test = prepare(settings)
    net.eval()
    batch = next(iter(test))[0]
    by_fraction = net.candidates(batch, 20)
    n = int(net.tree.size[0])
    net.budget, net.subcluster_pool = round(0.2 * n), round(0.5 * n)  # small's select_budget 0.2, in items
    by_items = net.candidates(batch, 20)
    assert net.budget > 1 and all(torch.equal(by_fraction[k], by_items[k]) for k in ("selected", "ids", "items"))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"subcluster_size": 0}, "subcluster_size"),
        ({"subcluster_size": 4, "subcluster_pool": 0}, "subcluster_pool must be"),
        ({"subcluster_size": 4, "subcluster_pool": 1.5}, "subcluster_pool must be"),
        ({"subcluster_size": 4, "subcluster_leaf_weight": 1.5}, "subcluster_leaf_weight must be"),
        ({"select_budget": 0}, "select_budget must be a fraction of the library in \\(0, 1\\] or a number of items"),
        ({"select_budget": 2.5}, "select_budget must be"),
        ({"select_budget": True}, "select_budget must be"),
    ],
)
def test_subcluster_keys_are_checked(small, bad, message):
    with pytest.raises(ConfigError, match=message):
        prepare({**small, "select_method": "density", **bad})
