"""The node-conditioned tower's grouped within-node loss against the plain masked full-library softmax."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_rimirec.model.twotower import NodeConditionedTower
from recbole_rimirec.tree.itemtree import build_tree
from recbole_rimirec.tree.tensors import TreeTensors


def masked_reference(tower: NodeConditionedTower, h, target, weight):
    """Each ancestor's softmax over the whole library with items outside the node masked out."""
    codes = tower.tree.codes[target]
    total, count = h.new_zeros(()), 0
    for level in range(codes.shape[1]):
        rows = (codes[:, level] > 0).nonzero().squeeze(1)
        node = codes[rows, level]
        logits = tower.user(h[rows], node) @ weight.T
        logits = logits.masked_fill(~tower.tree.in_node(node), float("-inf"))
        total = total + F.cross_entropy(logits, target[rows], reduction="sum")
        count += len(rows)
    return total / count


@pytest.mark.parametrize("conditioning", ["add", "film"])
@pytest.mark.parametrize("cold", [0, 9])
def test_grouped_loss_equals_masked_full_softmax(conditioning, cold):
    rng = np.random.default_rng(3)
    n_items, H = 301, 8
    vectors = rng.standard_normal((n_items, 6)).astype(np.float32)
    vectors[1 : 1 + cold] = 0  # items without training vectors: their own child of the root
    tree = TreeTensors(build_tree(vectors, 5, 12, 3, seed=1))
    tower = NodeConditionedTower(tree, H, conditioning)
    torch.manual_seed(0)
    for p in tower.parameters():
        torch.nn.init.normal_(p, std=0.3)
    weight = torch.randn(n_items, H, requires_grad=True)
    h = torch.randn(200, H, requires_grad=True)
    target = torch.randint(1, n_items, (200,))
    got = tower.loss(h, target, weight)
    want = masked_reference(tower, h, target, weight)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    g_got = torch.autograd.grad(got, [h, weight])
    g_want = torch.autograd.grad(want, [h, weight])
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _tower(seed=3):
    rng = np.random.default_rng(seed)
    n_items, H = 301, 8
    tree = TreeTensors(build_tree(rng.standard_normal((n_items, 6)).astype(np.float32), 5, 12, 3, seed=1))
    tower = NodeConditionedTower(tree, H, "add")
    torch.manual_seed(0)
    torch.nn.init.normal_(tower.shift.weight, std=0.3)
    return tower, torch.randn(n_items, H), torch.randn(200, H), torch.randint(1, n_items, (200,))


def test_sampled_loss_with_room_for_every_node_is_the_exact_loss():
    tower, weight, h, target = _tower()
    biggest = int(tower.tree.size[1:].max())
    assert torch.allclose(tower.sampled_loss(h, target, weight, biggest), tower.loss(h, target, weight), atol=1e-5)


def test_sampled_loss_in_large_nodes_is_finite_and_near_the_exact_on_average():
    tower, weight, h, target = _tower()
    exact = tower.loss(h, target, weight).item()
    g = torch.Generator().manual_seed(0)
    draws = [tower.sampled_loss(h, target, weight, 16, generator=g).item() for _ in range(20)]
    assert all(np.isfinite(draws))
    assert np.mean(draws) < exact + 1e-4  # a sampled softmax's denominator holds fewer items: never above, on average
    assert np.mean(draws) > 0.5 * exact
