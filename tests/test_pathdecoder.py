"""The path decoder (``generator_decoder: True``): probabilities, the teacher-forced loss, conditioning."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.model.pathdecoder import PathDecoder
from recbole_rimirec.tree.itemtree import build_tree
from recbole_rimirec.tree.tensors import TreeTensors


def decoder(n_items, branching, leaf, depth, seed, hidden=8):
    x = np.random.default_rng(seed).standard_normal((n_items, 6)).astype(np.float32)
    tree = TreeTensors(build_tree(x, branching, leaf, depth, seed))
    torch.manual_seed(seed)
    net = PathDecoder(tree, hidden, n_heads=2, inner_size=16, dropout=0.0)
    for p in net.parameters():  # larger weights than the 0.02 init, so the levels differ visibly
        torch.nn.init.normal_(p, std=0.5)
    return net.eval()


shapes = dict(
    n_items=st.integers(10, 120), branching=st.integers(2, 5), leaf=st.integers(2, 15), depth=st.integers(1, 3)
)


@given(**shapes, seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_every_node_is_scored_by_its_own_parents_query(n_items, branching, leaf, depth, seed):
    """logits()[c] = q(parent(c)) . e_c + b_c, q decoded from the parent's own path, for every non-root node."""
    net = decoder(n_items, branching, leaf, depth, seed)
    tree, h = net.tree, torch.randn(2, 8)
    with torch.no_grad():
        logits = net.logits(h)  # [2, N]
        for c in range(1, tree.num_nodes):
            path, v = [], int(tree.parent[c])
            while v > 0:  # the parent's ancestors below the root, down to the parent
                path.insert(0, v)
                v = int(tree.parent[v])
            q = net.decode(h, torch.tensor(path, dtype=torch.long).view(1, 1, -1).expand(2, 1, -1))[:, 0, -1]  # [2, H]
            expected = q @ net.node_embedding.weight[c] + net.node_bias[c]
            assert torch.allclose(logits[:, c], expected, atol=1e-5)
        assert torch.allclose(net(h).exp()[:, tree.is_leaf].sum(1), torch.ones(2), atol=1e-5)


@given(**shapes, seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_teacher_forced_loss_is_the_leafs_log_probability(n_items, branching, leaf, depth, seed):
    net = decoder(n_items, branching, leaf, depth, seed)
    h, target = torch.randn(5, 8), torch.randint(1, n_items, (5,))
    with torch.no_grad():
        everything = net(h).gather(1, net.tree.leaf[target][:, None]).mean()
        assert torch.allclose(net.loss(h, target), -everything, atol=1e-4)
        assert torch.allclose(net.loss(h, target, net(h)), -everything, atol=1e-6)


def test_a_childs_probability_is_decoded_from_its_own_parent():
    """P(child | parent, u) = softmax over siblings of q . e + b, q the decoder's output after [h, t(parent)]."""
    net = decoder(80, 3, 6, 2, 0)
    tree, h = net.tree, torch.randn(1, 8)
    v = int(tree.level(1)[~tree.is_leaf[tree.level(1)]][0])  # an inner node at depth 1
    kids = torch.arange(int(tree.child_lo[v]), int(tree.child_hi[v]))
    with torch.no_grad():
        x = torch.stack([h[0], net.token_embedding.weight[v]]) + net.step_embedding.weight[:2]  # [2, H]
        q = net.layer(x[None], src_mask=torch.ones(2, 2, dtype=torch.bool).triu(1))[0, 1]  # [H]
        manual = torch.log_softmax(net.node_embedding.weight[kids] @ q + net.node_bias[kids], 0)
        log_p = net(h)[0]
        assert torch.allclose(log_p[kids] - log_p[v], manual, atol=1e-5)
        other = torch.stack([h[0], net.token_embedding.weight[v + 1]]) + net.step_embedding.weight[:2]
        q_other = net.layer(other[None], src_mask=torch.ones(2, 2, dtype=torch.bool).triu(1))[0, 1]
        assert not torch.allclose(q, q_other)  # the query depends on the parent


def test_the_path_loss_trains_the_decoder_and_the_state():
    net = decoder(60, 3, 8, 2, 1).train()
    h = torch.randn(4, 8, requires_grad=True)
    net.loss(h, torch.randint(1, 60, (4,))).backward()
    for p in (net.token_embedding.weight, net.node_embedding.weight, h, *net.layer.parameters()):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0)
