"""The encoder's faster paths compute what RecBole's TransformerEncoder computes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recbole.model.layers import TransformerEncoder

from recbole_rimirec.model.encoder import encode_at, fuse_gelu
from tests.test_rimirec import TREE, prepare


def encoder(act="gelu", layers=2, heads=2, size=16):
    torch.manual_seed(0)
    return TransformerEncoder(layers, heads, size, 4 * size, 0.5, 0.5, act, 1e-12).eval()


def causal_mask(lengths, L):
    """RecBole's additive mask for left-aligned rows: causal, padding hidden."""
    real = torch.arange(L)[None, :] < lengths[:, None]  # [B, L]
    allowed = real[:, None, None, :] & torch.tril(torch.ones(L, L, dtype=torch.bool))  # [B, 1, L, L]
    return torch.where(allowed, 0.0, -10000.0)


def test_fused_gelu_changes_every_gelu_block_and_no_output():
    enc = encoder()
    x, mask = torch.randn(3, 7, 16), causal_mask(torch.tensor([7, 4, 1]), 7)
    before = enc(x, mask)[-1]
    keys = list(enc.state_dict())
    assert fuse_gelu(enc) == 2 and fuse_gelu(enc) == 0  # a second call finds none left
    assert torch.allclose(enc(x, mask)[-1], before, atol=1e-5)
    assert list(enc.state_dict()) == keys  # checkpoints unchanged
    assert fuse_gelu(encoder("relu")) == 0


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 5),
    L=st.integers(1, 9),
    layers=st.integers(1, 3),
    heads=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 1000),
)
def test_encode_at_equals_the_full_encoder_read_at_the_position(B, L, layers, heads, seed):
    enc = encoder(layers=layers, heads=heads)
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=gen)
    x, mask = torch.randn(B, L, 16, generator=gen), causal_mask(lengths, L)
    full = enc(x, mask)[-1][torch.arange(B), lengths - 1]  # [B, H]
    assert torch.allclose(encode_at(enc, x, mask, lengths - 1), full, atol=1e-5)


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_models_score_with_the_state_the_full_encoder_gives(tiny, model):
    _, _, net, _, _, test = prepare({**tiny, **TREE}, model)
    net.eval()
    batch = next(iter(test))[0]
    seq, lengths = batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN]
    with torch.no_grad():
        full = net.gather_indexes(net.encode_all(seq), lengths - 1)
        assert torch.allclose(net.forward(seq, lengths), full, atol=1e-5)
