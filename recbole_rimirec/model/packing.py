"""The attention mask of packed all-positions rows (several short user windows in one encoder row).

The all-positions loader (``all_positions_pack: true``) places a batch's windows end to end in rows
of ``MAX_ITEM_LIST_LENGTH`` slots and adds two fields: each slot's position inside its own window
and the window's rank in the row (its segment, 0 on padding). A causal encoder then attends only
within a segment and embeds positions per window, so every real slot gets the state it would get in
its own row (same weights, dropout off); only the padding that is no longer computed differs.
"""

from __future__ import annotations

import torch


def packed_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """Additive causal mask that keeps every slot inside its own window.

    Args:
        segments: [B, L] window rank of each slot (1, 2, ...), 0 on padding.

    Returns:
        torch.Tensor: [B, 1, L, L] with 0 where query slot i may attend key slot j (same window,
        j <= i, j not padding) and -10000 elsewhere, the convention of RecBole's
        ``get_attention_mask``.
    """
    same = segments[:, :, None] == segments[:, None, :]  # [B, L(query), L(key)]
    causal = torch.ones(segments.size(1), segments.size(1), dtype=torch.bool, device=segments.device).tril()
    allowed = same & causal[None] & (segments[:, None, :] > 0)
    return torch.where(allowed, 0.0, -10000.0)[:, None]  # [B, 1, L, L]
