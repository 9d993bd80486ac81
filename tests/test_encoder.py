"""The encoder's faster paths compute what RecBole's TransformerEncoder computes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recbole.model.layers import TransformerEncoder

from recbole_rimirec.model.encoder import FastDropout, encode_at, fast_dropout, fuse_gelu
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


def test_sasrecallpos_input_is_recbole_sasrecs(tiny):
    """encoder_input builds what RecBole's SASRec.forward builds inline: the same state at the last item."""
    from recbole.model.sequential_recommender.sasrec import SASRec

    _, _, net, _, _, test = prepare(tiny, "SASRecAllPos")
    net.eval()
    batch = next(iter(test))[0]
    seq, lengths = batch[net.ITEM_SEQ], batch[net.ITEM_SEQ_LEN]
    with torch.no_grad():
        assert torch.allclose(net.forward(seq, lengths), SASRec.forward(net, seq, lengths), atol=1e-5)


def test_fast_dropout_keeps_each_unit_with_probability_one_minus_p_and_rescales():
    torch.manual_seed(0)
    drop = FastDropout(0.3)
    x = torch.ones(200_000)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased, as torch's
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(FastDropout(1.0)(x), torch.zeros_like(x)) and torch.equal(FastDropout(0.0)(x), x)


def test_fast_dropout_swaps_every_dropout_and_keeps_gradients():
    enc = encoder().train()
    keys = list(enc.state_dict())
    assert fast_dropout(enc) == 2 * 3 and fast_dropout(enc) == 0  # three per layer; none left after
    assert all(type(m) is not torch.nn.Dropout for m in enc.modules())
    assert list(enc.state_dict()) == keys
    x = torch.randn(2, 5, 16, requires_grad=True)
    enc(x, causal_mask(torch.tensor([5, 3]), 5))[-1].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_models_train_with_the_faster_encoder_parts(tiny, model):
    _, _, net, _, _, _ = prepare({**tiny, **TREE}, model)
    ffs = [m for m in net.trm_encoder.modules() if hasattr(m, "intermediate_act_fn")]
    assert ffs and all(m.intermediate_act_fn is torch.nn.functional.gelu for m in ffs)
    assert not any(type(m) is torch.nn.Dropout for m in net.trm_encoder.modules())
    assert isinstance(net.dropout, FastDropout)
