"""Self- and cross-attention for the 1D U-Net, each switchable to causal (§4.2, Fig. 2; §5 for CFG).

All layers work on [B, T, C] and use torch's scaled_dot_product_attention. Boolean masks follow
its convention: True = this key may be attended to.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextCondition(NamedTuple):
    """The text condition of one forward, resolved once per U-Net call.

    context: [B, L, D] text states, or None when no sample of the batch uses text.
    key_mask: [B, L] bool, True = real token; None = every token is real.
    use_text: [B] bool for a batch that mixes text and no-text samples; None when all samples
        agree (then ``context is None`` tells which).
    """

    context: Tensor | None = None
    key_mask: Tensor | None = None
    use_text: Tensor | None = None


def _split_heads(x: Tensor, heads: int) -> Tensor:  # [B, T, H*D] -> [B, H, T, D]
    b, t, _ = x.shape
    return x.view(b, t, heads, -1).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:  # [B, H, T, D] -> [B, T, H*D]
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _causal_mask(t: int, device: torch.device) -> Tensor:  # [T, T] bool, lower triangle
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over frames; triangular mask in causal mode."""

    def __init__(self, dim: int, head_dim: int) -> None:
        super().__init__()
        self.heads = dim // head_dim
        self.norm = nn.LayerNorm(dim)  # over channels of one frame: causal-safe
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:  # [B, T, C]
        q, k, v = (_split_heads(z, self.heads) for z in self.to_qkv(self.norm(x)).chunk(3, -1))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return x + self.to_out(_merge_heads(out))


class CrossAttention(nn.Module):
    """Pre-norm cross-attention to text states, with the paper's self-attention stand-in (§5).

    For classifier-free guidance the paper "randomly replaces the cross-attention layer by
    self-attention". For samples without text this layer therefore attends over the latent
    frames themselves (triangular mask in causal mode), with queries, keys AND values all from
    ``to_q``. Why re-use ``to_q``: the text projections ``to_k``/``to_v`` read context_dim-wide
    text states and cannot read latent frames; separate self-attention k/v weights would cost
    parameters and be trained only on the ~20 % dropped samples; and re-using the block's own
    self-attention would make this branch a near copy of the layer just before it. Re-using the
    query projection keeps the guidance branch free of parameters, and everything it learns
    (to_q, to_out) is shared with, and trained by, the conditional branch too.

    Text and no-text samples share one batched call: keys are [text tokens ; latent frames] and a
    per-sample mask opens only the half that sample uses.
    """

    def __init__(self, dim: int, context_dim: int, head_dim: int) -> None:
        super().__init__()
        self.heads = dim // head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cond: TextCondition, causal: bool = False) -> Tensor:  # [B, T, C]
        q = self.to_q(self.norm(x))  # [B, T, C]
        qh = _split_heads(q, self.heads)
        if cond.context is None:  # no sample uses text: plain self-attention stand-in
            out = F.scaled_dot_product_attention(qh, qh, qh, is_causal=causal)
            return x + self.to_out(_merge_heads(out))

        kh = _split_heads(self.to_k(cond.context), self.heads)  # [B, H, L, D]
        vh = _split_heads(self.to_v(cond.context), self.heads)
        b, t, _ = x.shape
        length = cond.context.shape[1]
        text_keys = (
            cond.key_mask
            if cond.key_mask is not None
            else torch.ones(b, length, dtype=torch.bool, device=x.device)
        )
        if cond.use_text is None:  # every sample uses text
            mask = None if cond.key_mask is None else text_keys[:, None, None, :]
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
            return x + self.to_out(_merge_heads(out))

        # Mixed batch: each sample sees either its real text tokens or the latent frames.
        use = cond.use_text
        text_part = (use[:, None] & text_keys)[:, None, None, :].expand(b, 1, t, length)
        frames = (
            _causal_mask(t, x.device)
            if causal
            else torch.ones(t, t, dtype=torch.bool, device=x.device)
        )
        self_part = (~use)[:, None, None, None] & frames  # [B, 1, T, T]
        mask = torch.cat([text_part, self_part], dim=-1)  # [B, 1, T, L + T]
        out = F.scaled_dot_product_attention(
            qh, torch.cat([kh, qh], dim=2), torch.cat([vh, qh], dim=2), attn_mask=mask
        )
        return x + self.to_out(_merge_heads(out))


class FeedForward(nn.Module):
    """Pre-norm per-frame MLP (time-local, so causal-safe)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:  # [B, T, C]
        return x + self.net(x)


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to text, feed-forward; on [B, C, T] like the conv blocks."""

    def __init__(self, dim: int, context_dim: int, head_dim: int, ff_mult: int) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"attention width {dim} must be a multiple of head_dim {head_dim}")
        self.self_attn = SelfAttention(dim, head_dim)
        self.cross_attn = CrossAttention(dim, context_dim, head_dim)
        self.ff = FeedForward(dim, ff_mult) if ff_mult > 0 else None

    def forward(self, x: Tensor, cond: TextCondition, causal: bool = False) -> Tensor:
        h = x.transpose(1, 2)  # [B, C, T] -> [B, T, C]
        h = self.self_attn(h, causal)
        h = self.cross_attn(h, cond, causal)
        if self.ff is not None:
            h = self.ff(h)
        return h.transpose(1, 2)
