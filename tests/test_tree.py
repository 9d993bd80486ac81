"""Item tree invariants, determinism, planted-hierarchy recovery, save/load and bad keys."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.tree.itemtree import ItemTree, build_tree
from recbole_rimirec.tree.vectors import (
    cooccurrence,
    cooccurrence_window,
    ppmi_svd_vectors,
    pretrained_vectors,
    token_feature_vectors,
)


def random_vectors(n_items, dim, seed, cold=0):
    x = np.random.default_rng(seed).standard_normal((n_items, dim)).astype(np.float32)
    x[0] = 0
    x[1 : 1 + cold] = 0
    return x


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(2, 300),
    branching=st.integers(2, 8),
    leaf_size=st.integers(1, 40),
    max_depth=st.integers(1, 4),
    cold=st.integers(0, 5),
    seed=st.integers(0, 3),
)
def test_tree_invariants(n_items, branching, leaf_size, max_depth, cold, seed):
    branching = min(branching, n_items - 1) if n_items > 2 else 2
    if n_items - 1 < branching:
        return
    cold = min(cold, n_items - 1)
    tree = build_tree(random_vectors(n_items, 8, seed, cold), branching, leaf_size, max_depth, seed)
    assert tree.invariant_violation() is None
    leaf = tree.leaf_of
    assert np.all(tree.is_leaf[leaf[1:]])  # every item in exactly one leaf
    sizes = tree.node_size
    warm_internal = ~tree.is_leaf
    warm_internal[0] = False  # the root always has children, so every item's code is non-empty
    assert np.all(sizes[warm_internal] > leaf_size)  # only nodes above the cap are split
    assert np.all(tree.child_hi - tree.child_lo <= branching + 1)  # +1: the root's cold block
    assert tree.depth <= max_depth
    codes = tree.codes
    for item in range(1, n_items):
        path = codes[item][codes[item] > 0]
        assert path[-1] == leaf[item] and tree.node_parent[path[0]] == 0
        assert np.all(tree.node_parent[path[1:]] == path[:-1])
        pos = tree.pos[item]
        assert np.all((tree.node_lo[path] <= pos) & (pos < tree.node_hi[path]))  # nested ranges


def test_same_seed_same_tree_and_save_load(tmp_path):
    x = random_vectors(500, 16, 0)
    a, b = build_tree(x, 8, 20, 3, seed=5), build_tree(x, 8, 20, 3, seed=5)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.perm, b.perm)
    a.save(str(tmp_path / "new" / "folder" / "t.npz"))  # its folder is created
    c = ItemTree.load(str(tmp_path / "new" / "folder" / "t.npz"))
    assert np.array_equal(c.codes, a.codes) and c.meta == a.meta


def test_cold_items_get_their_own_root_child():
    tree = build_tree(random_vectors(200, 8, 1, cold=7), 4, 10, 3)
    cold_leaf = set(tree.leaf_of[1:8].tolist())
    assert len(cold_leaf) == 1
    (node,) = cold_leaf
    assert tree.node_parent[node] == 0 and tree.node_size[node] == 7


def test_tampered_or_truncated_tree_file_is_a_clear_error(tmp_path):
    tree = build_tree(random_vectors(100, 8, 0), 4, 10, 2)
    path = tmp_path / "t.npz"
    tree.save(str(path))
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match="cannot be read"):
        ItemTree.load(str(tmp_path / "cut.npz"))
    tree.node_hi[1] += 1
    tree.save(str(tmp_path / "bad.npz"))
    with pytest.raises(ConfigError, match="not a valid tree"):
        ItemTree.load(str(tmp_path / "bad.npz"))
    with pytest.raises(ConfigError, match="not found"):
        ItemTree.load(str(tmp_path / "none.npz"))


@pytest.mark.parametrize(
    "branching, leaf, depth, message",
    [(1, 10, 2, "tree_branching must be"), (500, 10, 2, "larger than the 99 items"), (4, 10, 0, "tree_max_depth")],
)
def test_bad_tree_keys(branching, leaf, depth, message):
    with pytest.raises(ConfigError, match=message):
        build_tree(random_vectors(100, 8, 0), branching, leaf, depth)


def planted_sequences(seed=0, users=400, circles=3, subs=4, per_sub=10):
    """Users follow 2 sub-circles; returns (flat, offsets, sub-circle of each item)."""
    rng = np.random.default_rng(seed)
    n_sub = circles * subs
    seqs = []
    for _ in range(users):
        mine = rng.choice(n_sub, 2, replace=False)
        seqs.append(1 + rng.choice(mine, 15) * per_sub + rng.integers(0, per_sub, 15))
    flat = np.concatenate(seqs)
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    return flat, offsets, np.r_[-1, np.arange(n_sub * per_sub) // per_sub]


def test_tree_recovers_planted_groups():
    flat, offsets, sub = planted_sequences()
    x = ppmi_svd_vectors(flat, offsets, len(sub), 16, seed=0)
    tree = build_tree(x, 12, 10, 2, seed=0)
    depth1 = tree.codes[1:, 0]
    ari = adjusted_rand_score(sub[1:], tree.leaf_of[1:])
    shuffled = adjusted_rand_score(np.random.default_rng(0).permutation(sub[1:]), tree.leaf_of[1:])
    print(
        f"ARI leaves vs planted sub-circles: {ari:.3f} (shuffled labels: {shuffled:.3f});"
        f" depth-1 nodes {len(set(depth1))}"
    )
    assert ari > 0.6 and abs(shuffled) < 0.1


def test_cooccurrence_counted_once_per_user():
    flat = np.array([1, 2, 1, 2, 1, 2, 3, 4])
    once = ppmi_svd_vectors(flat, np.array([0, 6, 8]), 5, 2)
    again = ppmi_svd_vectors(np.array([1, 2, 3, 4]), np.array([0, 2, 4]), 5, 2)
    assert np.allclose(np.abs(once), np.abs(again), atol=1e-5)


def test_pretrained_vectors_file(tmp_path):
    path = tmp_path / "v.tsv"
    path.write_text("a\t1 0\nb\t0 2\n")
    x = pretrained_vectors(str(path), np.array(["[PAD]", "b", "zz", "a"]))
    assert np.allclose(x, [[0, 0], [0, 1], [0, 0], [1, 0]])
    path.write_text("a\t1 0\nb\t0 2 3\n")
    with pytest.raises(ConfigError, match="line 2 has 3 values"):
        pretrained_vectors(str(path), np.array(["[PAD]", "a"]))
    path.write_text("a\tnan 0\n")
    with pytest.raises(ConfigError, match="NaN"):
        pretrained_vectors(str(path), np.array(["[PAD]", "a"]))
    path.write_text("q\t1 0\n")
    with pytest.raises(ConfigError, match="no token in common"):
        pretrained_vectors(str(path), np.array(["[PAD]", "a"]))


def test_token_feature_vectors_recover_planted_groups():
    rng = np.random.default_rng(1)
    group = np.r_[0, rng.integers(0, 6, 300)]  # [n_items] planted group per item (row 0 padding)
    noise = rng.integers(1, 100, (301, 1))  # a rarer token (brand-like) unrelated to the groups
    columns = [(group + 1)[:, None], noise]
    columns[0][0] = 0
    columns[0][7] = columns[1][7] = 0  # an item without tokens: a zero vector, so a cold item
    x = token_feature_vectors(columns, 301, 8, seed=0)
    assert not x[0].any() and not x[7].any()
    assert np.allclose(np.delete(np.linalg.norm(x, axis=1), [0, 7]), 1, atol=1e-5)
    tree = build_tree(x, 6, 50, 1, seed=0)
    keep = np.delete(np.arange(301), [0, 7])
    assert adjusted_rand_score(group[keep], tree.leaf_of[keep]) > 0.7  # measured 0.81; shuffled groups ~0


def test_cooccurrence_within_the_pair_budget_is_whole_sequences():
    flat, offsets = np.array([1, 2, 3, 1, 4]), np.array([0, 3, 5])  # users (1, 2, 3) and (1, 4)
    whole = cooccurrence(flat, offsets, 5, max_pairs=8).toarray()  # 3 x 2 + 2 x 1 = 8 ordered pairs: fits
    assert whole[1, 3] == whole[3, 1] == 1 and whole[1, 4] == 1 and whole.diagonal().sum() == 0
    assert np.array_equal(whole, cooccurrence(flat, offsets, 5).toarray())
    window = cooccurrence(flat, offsets, 5, max_pairs=7).toarray()  # over budget: neighbours only
    assert window[1, 3] == 0 and window[1, 2] == window[2, 3] == window[1, 4] == 1
    assert (window == window.T).all()
    repeats = cooccurrence(np.array([1, 2, 1, 1]), np.array([0, 4]), 3, max_pairs=1)  # neighbours (1,2) (2,1) (1,1)
    assert repeats[1, 2] == repeats[2, 1] == 2 and repeats.diagonal().sum() == 0 and (repeats.data != 0).all()


@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=30), budget=st.integers(1, 3000))
@settings(max_examples=100)
def test_the_window_counts_at_most_the_budget_unless_neighbours_alone_exceed_it(lengths, budget):
    lengths = np.array(lengths)
    window = cooccurrence_window(lengths, budget)
    whole = int((lengths * (lengths - 1)).sum())
    if window is None:
        assert whole <= budget
        return
    pairs = lambda w: int(sum(2 * np.maximum(lengths - d, 0).sum() for d in range(1, w + 1)))  # noqa: E731
    assert whole > budget and window >= 1
    assert pairs(window) <= budget or window == 1
    assert window + 1 >= lengths.max() or pairs(window + 1) > budget  # the widest that fits
    offsets = np.r_[0, np.cumsum(lengths)]
    flat = np.arange(1, offsets[-1] + 1)  # distinct items: every pair is one count
    assert cooccurrence(flat, offsets, offsets[-1] + 1, budget).sum() == (pairs(window) if window else whole)
