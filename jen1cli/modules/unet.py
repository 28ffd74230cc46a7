"""OmniUNet1d: JEN-1's omnidirectional 1D Efficient U-Net (§4.2, Fig. 2).

One set of weights, two modes chosen per call. ``causal=False`` is the bidirectional mode;
``causal=True`` is the unidirectional mode: causal zero padding in every convolution (the down-
and up-sampling ones too) and a triangular mask in every attention over frames. All norms are
per frame and the time embedding is global, so in causal mode output frame t depends only on input
frames <= t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jen1cli.config import DiffusionConfig, UNetConfig
from jen1cli.modules.attention import TextCondition, TransformerBlock
from jen1cli.modules.frame_norm import frame_norm
from jen1cli.modules.layers import Downsample1d, ModeConv1d, TimeEmbedding, Upsample1d
from jen1cli.modules.pooled_text import PooledTextEmbedding
from jen1cli.modules.v_prediction import alpha_bar_at, alphas_cumprod, epsilon_from_v


class ResBlock(nn.Module):
    """Two mode-switchable convs; the time embedding scales and shifts the second norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        config: UNetConfig,
    ) -> None:
        super().__init__()
        norm, groups, kernel_size = config.norm, config.norm_groups, config.kernel_size
        self.norm1 = frame_norm(norm, in_channels, groups)
        self.conv1 = ModeConv1d(in_channels, out_channels, kernel_size)
        self.time_proj = nn.Linear(time_dim, 2 * out_channels)
        self.norm2 = frame_norm(norm, out_channels, groups)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = ModeConv1d(out_channels, out_channels, kernel_size)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, temb: Tensor, causal: bool = False) -> Tensor:  # [B, C, T]
        h = self.conv1(F.silu(self.norm1(x)), causal)
        scale, shift = self.time_proj(F.silu(temb))[:, :, None].chunk(2, dim=1)  # [B, C, 1]
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)), causal)
        return h + (x if self.skip is None else self.skip(x))


class _Stage(nn.Module):
    """ResBlocks at one resolution, each followed by a transformer block when ``attention``."""

    def __init__(
        self, in_channels: int, channels: int, blocks: int, attention: bool, config: UNetConfig
    ) -> None:
        super().__init__()
        c = config
        self.res = nn.ModuleList(
            ResBlock(
                in_channels if i == 0 else channels,
                channels,
                c.time_embed_dim,
                c,
            )
            for i in range(blocks)
        )
        self.attn = (
            nn.ModuleList(
                TransformerBlock(channels, c.context_dim, c.head_dim, c.ff_mult)
                for _ in range(blocks)
            )
            if attention
            else None
        )

    def forward(self, x: Tensor, temb: Tensor, cond: TextCondition, causal: bool) -> Tensor:
        for i, res in enumerate(self.res):
            x = res(x, temb, causal)
            if self.attn is not None:
                x = self.attn[i](x, cond, causal)
        return x


class DownBlock(nn.Module):
    """Down-sampling layer -> ResBlocks (-> self + cross attention)."""

    def __init__(self, in_channels: int, level: int, config: UNetConfig) -> None:
        super().__init__()
        factor = config.factors[level]
        self.down = Downsample1d(in_channels, factor) if factor > 1 else None
        self.stage = _Stage(
            in_channels,
            config.channels[level],
            config.res_blocks[level],
            config.attention[level],
            config,
        )

    def forward(self, x: Tensor, temb: Tensor, cond: TextCondition, causal: bool) -> Tensor:
        if self.down is not None:
            x = self.down(x, causal)
        return self.stage(x, temb, cond, causal)


class UpBlock(nn.Module):
    """Up-sampling layer -> ResBlocks on [features ; skip] (-> self + cross attention)."""

    def __init__(self, in_channels: int, level: int, config: UNetConfig) -> None:
        super().__init__()
        # Level i's input comes from level i + 1, which down-sampled by factors[i + 1].
        factor = config.factors[level + 1] if level + 1 < len(config.channels) else 1
        self.up = Upsample1d(in_channels, factor, config.kernel_size) if factor > 1 else None
        channels = config.channels[level]
        self.stage = _Stage(
            in_channels + channels,
            channels,
            config.res_blocks[level],
            config.attention[level],
            config,
        )

    def forward(
        self, x: Tensor, skip: Tensor, temb: Tensor, cond: TextCondition, causal: bool
    ) -> Tensor:
        if self.up is not None:
            x = self.up(x, causal)
        return self.stage(torch.cat([x, skip], dim=1), temb, cond, causal)


class OmniUNet1d(nn.Module):
    """JEN-1's omnidirectional U-Net: predicts ε from [x_t ; masked latent ; mask] (2k + 1 -> k).

    ``diffusion`` names the noise schedule that ``config.prediction = "v"`` reads ᾱ_t from (the
    default schedule when None); the ε-predicting network ignores it.
    """

    def __init__(self, config: UNetConfig, diffusion: DiffusionConfig | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c, ch = config, config.channels
        if c.prediction == "v":
            # Not persistent: derived from the config, so weight files stay the same either way.
            table = alphas_cumprod(diffusion or DiffusionConfig())
            self.register_buffer("alphas_cumprod", table, persistent=False)
        self.time_embed = TimeEmbedding(ch[0], c.time_embed_dim)
        self.pooled_text = (
            PooledTextEmbedding(c.context_dim, c.time_embed_dim) if c.pooled_text else None
        )
        self.conv_in = ModeConv1d(2 * c.latent_channels + 1, ch[0], c.kernel_size)
        self.down = nn.ModuleList()
        prev = ch[0]
        for level in range(len(ch)):
            self.down.append(DownBlock(prev, level, c))
            prev = ch[level]
        self.mid_res1 = ResBlock(ch[-1], ch[-1], c.time_embed_dim, c)
        self.mid_attn = (
            TransformerBlock(ch[-1], c.context_dim, c.head_dim, c.ff_mult)
            if c.mid_attention
            else None
        )
        self.mid_res2 = ResBlock(ch[-1], ch[-1], c.time_embed_dim, c)
        # up[i] mirrors down[i]; it runs deepest first.
        self.up = nn.ModuleList(
            UpBlock(ch[level + 1] if level + 1 < len(ch) else ch[-1], level, c)
            for level in range(len(ch))
        )
        self.norm_out = frame_norm(c.norm, ch[0], c.norm_groups)
        self.conv_out = ModeConv1d(ch[0], c.latent_channels, c.kernel_size)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | int | float,
        masked_latent: Tensor,
        mask: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        use_text: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """Predict ε̂ [B, k, T] for any T >= 1 (through v̂ when ``config.prediction`` is "v").

        Args:
            sample: noisy latent x_t [B, k, T].
            timestep: diffusion step(s) in 0..999, [B] or scalar, int or float.
            masked_latent: the known latent with the generated region zeroed [B, k, T].
            mask: [B, 1, T], 1 = generate, 0 = known.
            context: text states [B, L, context_dim].
            context_mask: [B, L] bool, True = real token (padding is never attended).
            use_text: [B] bool; False = cross-attention replaced by self-attention (the
                classifier-free guidance branch). Default: all True iff context is given.
            causal: unidirectional mode (True) or bidirectional (False).
        """
        b, k, t = sample.shape
        if k != self.config.latent_channels or t < 1:
            raise ValueError(
                f"sample must be [B, {self.config.latent_channels}, T>=1], got "
                f"{tuple(sample.shape)}"
            )
        if masked_latent.shape != sample.shape or mask.shape != (b, 1, t):
            raise ValueError("masked_latent must match sample and mask must be [B, 1, T]")
        cond = self._text_condition(b, context, context_mask, use_text, sample.dtype)

        timestep = torch.as_tensor(timestep, device=sample.device)
        timestep = timestep.expand(b) if timestep.ndim == 0 else timestep
        temb = self.time_embed(timestep)  # [B, E]
        if self.pooled_text is not None and cond.context is not None:
            temb = temb + self.pooled_text(cond.context, cond.key_mask, cond.use_text)

        x = torch.cat([sample, masked_latent, mask.to(sample.dtype)], dim=1)  # [B, 2k+1, T]
        # Pad at the END to a multiple of the down-sampling: frames after T can only influence
        # frames after T in causal mode, and the padding is trimmed off the output.
        x = F.pad(x, (0, -t % self.config.downsample_factor))

        h = self.conv_in(x, causal)
        skips = []
        for block in self.down:
            h = block(h, temb, cond, causal)
            skips.append(h)
        h = self.mid_res1(h, temb, causal)
        if self.mid_attn is not None:
            h = self.mid_attn(h, cond, causal)
        h = self.mid_res2(h, temb, causal)
        for block, skip in zip(reversed(self.up), reversed(skips), strict=True):
            h = block(h, skip, temb, cond, causal)
        out = self.conv_out(F.silu(self.norm_out(h)), causal)[:, :, :t]
        if self.config.prediction == "v":
            return epsilon_from_v(out, sample, alpha_bar_at(self.alphas_cumprod, timestep))
        return out

    def _text_condition(
        self,
        batch: int,
        context: Tensor | None,
        context_mask: Tensor | None,
        use_text: Tensor | None,
        dtype: torch.dtype,
    ) -> TextCondition:
        """Check the text inputs and decide once per call which attention path the layers take."""
        if context is None:
            if use_text is not None and bool(use_text.any()):
                raise ValueError("use_text is True for some samples but no context was given")
            return TextCondition()
        if context.ndim != 3 or context.shape[0] != batch:
            raise ValueError(f"context must be [B={batch}, L, D], got {tuple(context.shape)}")
        if context.shape[2] != self.config.context_dim:
            raise ValueError(
                f"context width {context.shape[2]} != context_dim {self.config.context_dim}"
            )
        if context_mask is not None:
            if context_mask.shape != context.shape[:2]:
                raise ValueError("context_mask must be [B, L]")
            context_mask = context_mask.bool()
        context = context.to(dtype)
        if use_text is None:  # all samples use text; no host sync unless a mask needs checking
            if context_mask is not None and not bool(context_mask.any(1).all()):
                raise ValueError("a sample with use_text=True has no real token in context_mask")
            return TextCondition(context, context_mask, None)
        use_text = use_text.to(device=context.device, dtype=torch.bool).reshape(batch)
        if context_mask is not None and not bool((context_mask.any(1) | ~use_text).all()):
            # Such a row would attend to nothing (NaN); an empty prompt still has an EOS token.
            raise ValueError("a sample with use_text=True has no real token in context_mask")
        if not bool(use_text.any()):
            return TextCondition()  # the context is ignored entirely
        if bool(use_text.all()):
            return TextCondition(context, context_mask, None)
        return TextCondition(context, context_mask, use_text)
