"""Global text conditioning: the prompt's mean token state, added to the time embedding.

Cross-attention (§4.2) lets each latent frame look up the words it needs, but a small model
trained briefly learns to use it late: early in training the attention weights are near uniform
and the text reaches the U-Net only as a faint average. AudioLDM and Stable Audio therefore also
add a pooled text vector to the global embedding that every ResBlock reads (scale and shift of its
norm), which carries style, key and tempo words to every frame from the first steps. This is an
addition to the paper's design, off by default (``UNetConfig.pooled_text``); the model card's
ablation row measures what it buys.

The pooled vector is the masked mean of the token states, which for sentence encoders such as
MiniLM is exactly their trained sentence embedding (before normalisation). Samples without text
(the guidance branch, §5) get no pooled term at all, so the unconditional branch stays the
paper's: time embedding only.
"""

from __future__ import annotations

from torch import Tensor, nn


def masked_mean(context: Tensor, key_mask: Tensor | None) -> Tensor:
    """Mean of the real tokens' states: [B, L, D] (+ [B, L] bool) -> [B, D]."""
    if key_mask is None:
        return context.mean(dim=1)
    weights = key_mask.to(context.dtype)[:, :, None]  # [B, L, 1]
    return (context * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class PooledTextEmbedding(nn.Module):
    """Pooled text states -> a vector the size of the time embedding (zero for no-text samples)."""

    def __init__(self, context_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(context_dim)  # encoders differ in state scale; this evens it
        self.mlp = nn.Sequential(
            nn.Linear(context_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        # Start as a no-op, so switching the option on does not disturb a trained time path.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self, context: Tensor, key_mask: Tensor | None, use_text: Tensor | None
    ) -> Tensor:  # -> [B, E]
        dtype = self.mlp[0].weight.dtype
        emb = self.mlp(self.norm(masked_mean(context.to(dtype), key_mask)))
        if use_text is None:
            return emb
        return emb * use_text.to(emb.dtype)[:, None]
