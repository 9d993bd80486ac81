"""Building blocks of the multi-interest models: capsule routing, self-attentive heads, readout, loss.

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation" (ComiRec),
KDD 2020, and its code (THUDM/ComiRec); C. Li et al., "Multi-Interest Network with Dynamic
Routing for Recommendation at Tmall" (MIND), CIKM 2019. Sequences are left-aligned and 0-padded
on the right, as in both RecBole and the reference.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_rimirec.errors import ConfigError


def squash(x: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Capsule squash along the last axis: ``|x|^2 / (1 + |x|^2) * x / |x|``.

    Args:
        x: [..., d] capsule vectors.
        eps: added under the square root, so a zero vector maps to zero.

    Returns:
        torch.Tensor: [..., d], same directions, norms in [0, 1).
    """
    norm2 = (x * x).sum(-1, keepdim=True)
    return norm2 / (1 + norm2) / torch.sqrt(norm2 + eps) * x


class CapsuleRouting(nn.Module):
    """Dynamic routing from history items to K interest capsules (MIND / ComiRec-DR).

    Args:
        dim: embedding size d.
        num_interest: K.
        max_len: L, the history length (per-position maps need it).
        shared_map: True for MIND's one shared bilinear map, False for ComiRec-DR's map per
            position and per interest (shape [1, L, K*d, d] in the reference).
        iterations: routing iterations (3); gradients flow through the last one only.
        relu_layer: MIND's optional ReLU projection of the capsules.
        random_init: draw the initial routing logits from a truncated normal (MIND): fresh on
            every training pass, and at evaluation one fixed draw made at construction (a
            buffer, saved with the weights), so metrics repeat. With a shared map, zeros would
            make all K capsules identical. Without it, routing starts from zeros (ComiRec-DR).
    """

    def __init__(
        self,
        dim: int,
        num_interest: int,
        max_len: int,
        shared_map: bool,
        iterations: int = 3,
        relu_layer: bool = False,
        random_init: bool = False,
    ):
        super().__init__()
        self.dim, self.num_interest, self.max_len = dim, num_interest, max_len
        self.iterations, self.random_init = iterations, random_init
        if shared_map:
            self.bilinear = nn.Linear(dim, dim, bias=False)
            self.weights = None
        else:
            self.bilinear = None
            self.weights = nn.Parameter(torch.randn(1, max_len, num_interest * dim, dim))
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) if relu_layer else None
        init = (
            self._truncated_normal(1, num_interest, max_len) if random_init else torch.zeros(1, num_interest, max_len)
        )
        self.register_buffer("eval_init", init)

    @staticmethod
    def _truncated_normal(*shape, device=None) -> torch.Tensor:
        return nn.init.trunc_normal_(torch.empty(*shape, device=device), std=1.0, a=-2.0, b=2.0)

    def forward(self, item_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Routes a batch of histories.

        Args:
            item_emb: [B, L, d] history embeddings (padding rows are zeroed here).
            mask: [B, L] bool, True at real items.

        Returns:
            torch.Tensor: [B, K, d] interest capsules.
        """
        B, L, d = item_emb.shape
        K = self.num_interest
        item_emb = item_emb * mask.unsqueeze(-1)
        if self.bilinear is not None:
            hat = self.bilinear(item_emb).unsqueeze(1).expand(B, K, L, d)  # [B, K, L, d]
        else:
            hat = torch.einsum("lod,bld->blo", self.weights[0, :L], item_emb)  # [B, L, K*d], one matmul per position
            hat = hat.view(B, L, K, d).transpose(1, 2)  # [B, K, L, d]
        hat_iter = hat.detach()
        if self.random_init and self.training:
            logits = self._truncated_normal(B, K, L, device=item_emb.device)
        else:
            logits = self.eval_init[:, :, :L].expand(B, K, L)
        keep = mask.unsqueeze(1)  # [B, 1, L]
        for i in range(self.iterations):
            weight = torch.where(keep, torch.softmax(logits, dim=1), torch.zeros_like(logits))  # softmax over K
            if i < self.iterations - 1:
                caps = squash(torch.einsum("bkl,bkld->bkd", weight, hat_iter))  # [B, K, d]
                logits = logits + torch.einsum("bkld,bkd->bkl", hat_iter, caps)
            else:
                caps = squash(torch.einsum("bkl,bkld->bkd", weight, hat))
        return self.proj(caps) if self.proj is not None else caps


class SelfAttentiveInterests(nn.Module):
    """ComiRec-SA's extractor: ``softmax_L(W2 tanh(W1 (H + P)))`` gives K heads over positions.

    Args:
        dim: embedding size d.
        num_interest: K heads.
        max_len: L (position embeddings).
        hidden_size: width of the tanh layer (the reference uses 4 x hidden size).
    """

    def __init__(self, dim: int, num_interest: int, max_len: int, hidden_size: int):
        super().__init__()
        self.position = nn.Parameter(torch.empty(1, max_len, dim))
        nn.init.xavier_uniform_(self.position)
        self.hidden = nn.Linear(dim, hidden_size)
        self.heads = nn.Linear(hidden_size, num_interest)

    def forward(self, item_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pools a batch of histories into K interests.

        Args:
            item_emb: [B, L, d] history embeddings.
            mask: [B, L] bool, True at real items.

        Returns:
            torch.Tensor: [B, K, d] interests (attention-weighted sums of item embeddings).
        """
        L = item_emb.size(1)
        scores = self.heads(torch.tanh(self.hidden(item_emb + self.position[:, :L])))  # [B, L, K]
        scores = scores.transpose(1, 2).masked_fill(~mask.unsqueeze(1), float("-inf"))  # [B, K, L]
        return torch.softmax(scores, dim=-1) @ item_emb  # [B, K, d]


def label_aware_readout(interests: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
    """Picks, per user, the interest that scores the target item highest (training only).

    Args:
        interests: [B, K, d].
        target_emb: [B, d].

    Returns:
        torch.Tensor: [B, d] the chosen interest.
    """
    best = torch.einsum("bkd,bd->bk", interests, target_emb).argmax(dim=1)  # [B]
    return interests[torch.arange(len(best), device=best.device), best]


# ``global_negatives`` / ``tower_negatives: auto``: the exact softmaxes up to this many items, sampled beyond, where a
# batch's [2048 targets, items] logits pass 0.8 GB (the sampled sizes are the ones the scale benchmark measured)
AUTO_EXACT_MAX_ITEMS = 100_000
AUTO_NEGATIVES = {"global_negatives": 4096, "tower_negatives": 256}


def resolve_negatives(config, key: str, n_items: int) -> int:
    """Resolves a sampled loss's size, ``auto`` included, and writes the resolved value back to the config.

    Args:
        config: the run's Config (or a dict); ``config[key]`` is ``None`` (the exact softmax), a positive
            integer, or ``'auto'``: exact up to ``AUTO_EXACT_MAX_ITEMS`` items, ``AUTO_NEGATIVES[key]`` beyond.
        key: ``global_negatives`` or ``tower_negatives``.
        n_items: size of the item id space (padding included).

    Returns:
        int: the number of sampled items, 0 for the exact softmax.

    Raises:
        ConfigError: naming the key when the value is neither ``auto``, ``~`` nor a positive integer.
    """
    value = check_negatives(key, config[key])
    if value == "auto":
        value = AUTO_NEGATIVES[key] if n_items > AUTO_EXACT_MAX_ITEMS else None
        config[key] = value  # what the run used, for the checks that read the key and the saved config
    return value or 0


def check_negatives(key: str, value):
    """Checks a sampled loss's size before the library's size is known.

    Args:
        key: ``global_negatives`` or ``tower_negatives``.
        value: the user's value.

    Returns:
        the value, unchanged.

    Raises:
        ConfigError: naming the key when the value is neither ``auto``, ``~`` nor a positive integer.
    """
    if value not in (None, "auto") and (
        not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
    ):
        raise ConfigError(f"{key} must be auto, ~ (the exact softmax) or an integer of at least 1, not {value!r}")
    return value


def sampled_softmax_loss(
    user: torch.Tensor,
    target: torch.Tensor,
    item_weight: torch.Tensor,
    sample_prob: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    sparse: bool = False,
) -> torch.Tensor:
    """Sampled softmax with negatives shared across the batch and the log-Q correction.

    Negatives are drawn with replacement from ``sample_prob``; every logit is corrected by
    ``-log(num_samples * q(item))`` and a negative equal to the row's target is removed, as in
    TensorFlow's ``sampled_softmax_loss`` used by the reference.

    Args:
        user: [B, d] user vectors.
        target: [B] target item ids.
        item_weight: [n_items, d] the item embedding table.
        sample_prob: [n_items] sampling distribution q (0 for padding).
        num_samples: S, negatives shared by the batch.
        generator: torch random generator for the draw.
        sparse: give ``item_weight`` a sparse gradient (the rows looked up), for ``sparse_item_grad``.

    Returns:
        torch.Tensor: the mean loss.
    """
    negatives = torch.multinomial(sample_prob, num_samples, replacement=True, generator=generator)  # [S]
    log_q = torch.log(sample_prob * num_samples)
    pos = (user * F.embedding(target, item_weight, sparse=sparse)).sum(-1) - log_q[target]  # [B]
    neg = user @ F.embedding(negatives, item_weight, sparse=sparse).T - log_q[negatives]  # [B, S]
    neg = neg.masked_fill(negatives.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)  # [B, 1 + S]
    return F.cross_entropy(logits, torch.zeros_like(target))


def item_counts(dataset, n_items: int) -> torch.Tensor:
    """Counts each item once per position of each user's training sequence.

    Args:
        dataset: the built train split (prefix rows).
        n_items: size of the item id space.

    Returns:
        torch.Tensor: [n_items] float counts.
    """
    from recbole_rimirec.data.loaders import train_sequences

    _, flat, _ = train_sequences(dataset)
    return torch.bincount(torch.from_numpy(flat), minlength=n_items).float()


def popularity_distribution(dataset, n_items: int) -> torch.Tensor:
    """The popularity sampler's distribution: training counts plus one (unseen items stay possible), no padding.

    Args:
        dataset: the built train split (prefix rows).
        n_items: size of the item id space.

    Returns:
        torch.Tensor: [n_items] probabilities, 0 for item 0.
    """
    q = item_counts(dataset, n_items) + 1.0
    q[0] = 0.0
    return q / q.sum()
