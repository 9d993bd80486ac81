"""Faster paths through RecBole's ``TransformerEncoder``, with its own weights and the same outputs.

SASRecAllPos and RimiRec use RecBole's Transformer (the architecture of RecBole's SASRec). Three
things in it cost time without changing what it computes:

- its GELU is written out as ``x * 0.5 * (1 + erf(x / sqrt(2)))``, five tensor operations and their
  backward; :func:`fuse_gelu` swaps in torch's fused ``F.gelu`` (the same erf formula);
- scoring reads one position per user (the last item), but the encoder computes every position of
  the last layer; :func:`encode_at` computes the layers below in full and the last layer at the read
  position only (its keys and values still come from every position);
- on a CPU, torch's dropout draws its mask with ``bernoulli_``, about 2.5x slower than comparing
  uniform numbers with p (a quarter of an ml-100k training step went to the attention's dropout);
  :func:`fast_dropout` swaps in :class:`FastDropout`, the same distribution drawn that way.

None of them touches the parameters, so checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.layers import FeedForward, TransformerEncoder

from recbole_rimirec.model.packing import packed_attention_mask


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is drawn as ``uniform >= p``: each unit kept with probability
    1 - p and scaled by 1 / (1 - p), as torch's; on a GPU, torch's own fused dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.is_cuda:
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))


def fast_dropout(model: nn.Module) -> int:
    """Replaces every ``nn.Dropout`` inside a module by a :class:`FastDropout` of the same p.

    Args:
        model: any module (a model, or RecBole's ``TransformerEncoder``).

    Returns:
        int: how many were replaced.
    """
    found = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout
    ]
    for parent, name, child in found:
        setattr(parent, name, FastDropout(child.p, child.inplace))
    return len(found)


def fuse_gelu(encoder: TransformerEncoder) -> int:
    """Gives each feed-forward block whose activation is RecBole's GELU torch's fused one.

    Args:
        encoder: a RecBole ``TransformerEncoder``.

    Returns:
        int: how many blocks were changed (0 when ``hidden_act`` is not ``gelu``).
    """
    changed = 0
    for module in encoder.modules():
        act = getattr(module, "intermediate_act_fn", None)
        if isinstance(module, FeedForward) and getattr(act, "__func__", None) is FeedForward.gelu:
            module.intermediate_act_fn = F.gelu
            changed += 1
    return changed


def encoder_input(
    model: nn.Module,
    item_seq: torch.Tensor,
    positions: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A SASRec-style model's encoder input: item plus position embeddings, LayerNorm, dropout.

    Args:
        model: has RecBole SASRec's ``item_embedding``, ``position_embedding``, ``LayerNorm``,
            ``dropout`` and ``get_attention_mask``.
        item_seq: [B, L] item ids (0 pads).
        positions: [B, L] or ``None`` (0..L-1 in every row); packed rows restart at each segment.
        segments: [B, L] segment ids of packed rows, or ``None`` (one causal sequence per row).
        extra: [B, L, H] added before the LayerNorm (RimiRec's tree-code embeddings), or ``None``.

    Returns:
        (hidden, mask): [B, L, H] and RecBole's additive attention mask [B, 1, L, L].
    """
    if positions is None:
        positions = torch.arange(item_seq.size(1), device=item_seq.device)[None]  # [1, L]
    hidden = model.item_embedding(item_seq) + model.position_embedding(positions)  # [B, L, H]
    if extra is not None:
        hidden = hidden + extra
    hidden = model.dropout(model.LayerNorm(hidden))
    mask = model.get_attention_mask(item_seq) if segments is None else packed_attention_mask(segments)
    return hidden, mask


def encode_at(
    encoder: TransformerEncoder, hidden: torch.Tensor, mask: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """The encoder's output at one position per row, the last layer computed there only.

    Equal to ``encoder(hidden, mask)[-1][rows, index]`` (tested).

    Args:
        encoder: a RecBole ``TransformerEncoder``.
        hidden: [B, L, H] the encoder's input.
        mask: [B, 1, L, L] RecBole's additive attention mask.
        index: [B] the position read in each row.

    Returns:
        torch.Tensor: [B, H].
    """
    for layer in encoder.layer[:-1]:
        hidden = layer(hidden, mask)
    last = encoder.layer[-1]
    attn = last.multi_head_attention
    B, L, _ = hidden.shape
    heads, size = attn.num_attention_heads, attn.attention_head_size
    rows = torch.arange(B, device=hidden.device)
    x = hidden[rows, index]  # [B, H]
    q = attn.query(x).view(B, heads, 1, size)  # [B, heads, 1, size]
    k = attn.key(hidden).view(B, L, heads, size).permute(0, 2, 3, 1)  # [B, L, H] -> [B, heads, size, L]
    v = attn.value(hidden).view(B, L, heads, size).permute(0, 2, 1, 3)  # [B, L, H] -> [B, heads, L, size]
    scores = q @ k / attn.sqrt_attention_head_size + mask[rows, :, index].unsqueeze(2)  # [B, heads, 1, L]
    probs = attn.attn_dropout(attn.softmax(scores))
    context = (probs @ v).reshape(B, heads * size)  # [B, heads, 1, size] -> [B, H]
    out = attn.LayerNorm(attn.out_dropout(attn.dense(context)) + x)
    return last.feed_forward(out)
