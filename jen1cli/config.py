"""Typed model configuration: one dataclass per part, serialised as one readable config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a dataclass from a dict, turning lists back into tuples and refusing unknown keys."""
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


@dataclass
class AutoencoderConfig:
    """Continuous SEANet/EnCodec-style autoencoder (§4.1). Defaults are EnCodec 48 kHz's shape.

    The paper quotes "hop size of 320, resulting in 125Hz latent sequences" at 48 kHz, but
    48 000 / 320 = 150: we keep the hop (which fixes the architecture) and so get 150 frames/s.
    """

    sample_rate: int = 48_000
    audio_channels: int = 2
    latent_dim: int = 128
    base_channels: int = 32
    # Decoder up-sampling ratios, as EnCodec lists them; the encoder uses them reversed.
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    compress: int = 2
    lstm_layers: int = 2  # 0 drops the LSTM (slim CPU models)
    norm: Literal["time_group_norm", "weight_norm", "none"] = "time_group_norm"
    pad_mode: str = "reflect"
    conv_shortcut: bool = True  # 1x1 conv on residual skips, as EnCodec; False = identity
    latent_mask_prob: float = 0.05  # §4.1: p = 5 % of latent frames masked before the decoder
    # "seanet": the paper's waveform decoder (EnCodec layout; the fields above). "istft": the
    # Fourier codec of modules/fourier_autoencoder.py (the fields below; hop = product of ratios).
    decoder: Literal["seanet", "istft"] = "seanet"
    mid_bands: int = 112  # istft: pitch-scale bands of the mid channel ...
    side_bands: int = 16  # ... and of the side channel; latent_dim = mid_bands + side_bands
    analysis_ffts: tuple[int, ...] = (8192, 2048)  # long windows resolve the bass, short time it
    n_fft: int = 4096  # the decoder's STFT: fine bins keep the pitch of low notes
    frames_per_latent: int = 1  # STFT frames per latent frame (STFT hop = hop / this)
    decoder_dim: int = 192
    decoder_layers: int = 6
    griffin_lim_iters: int = 32
    latent_offset: float = -14.0  # latent = (ln band energy - offset) / scale
    latent_scale: float = 4.0

    @property
    def hop_length(self) -> int:
        hop = 1
        for r in self.ratios:
            hop *= r
        return hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class WhitenerConfig:
    """Algorithm 1: whiten latents and keep the k most important directions."""

    latent_dim: int = 128
    # ceil(0.95 * 128) would be 122 too: drop the 5 % least important directions.
    keep_dim: int = 122
    eps: float = 1e-8


@dataclass
class UNetConfig:
    """OmniUNet1d (§4.2, Fig. 2): a 1D Efficient U-Net run bidirectionally or causally.

    Level i first down-samples by ``factors[i]``, then runs ``res_blocks[i]`` ResBlocks at
    ``channels[i]``, each followed by self + cross attention where ``attention[i]`` is set.
    """

    latent_channels: int = 122  # k: input is 2k + 1 channels (x_t, masked latent, mask), output k
    # Defaults are the full-size reference (~743 M parameters, models/jen1-746m). As in Efficient
    # U-Net, the deeper (cheaper) levels get more blocks, and attention only runs at 1/4 and 1/8
    # of the latent rate (375 and 188 frames for a 10 s window).
    channels: tuple[int, ...] = (384, 768, 1024, 1536)
    factors: tuple[int, ...] = (1, 2, 2, 2)  # down-sampling factor entering each level
    res_blocks: tuple[int, ...] = (1, 2, 3, 4)
    attention: tuple[bool, ...] = (False, False, True, True)  # self + cross attention per level
    head_dim: int = 64
    context_dim: int = 1024  # width of the text encoder's states (the cross-attention input)
    time_embed_dim: int = 1536
    # Per-frame norm (modules/frame_norm.py): "layer" or "rms" normalise over all of a frame's
    # channels; "group" (groups of ``norm_groups``) is the legacy norm that keeps ~1/3 of each
    # frame's information at 3 channels per group (issue 16). Config files written before this
    # field existed load as "group".
    norm: Literal["group", "layer", "rms"] = "layer"
    norm_groups: int = 32
    # The network's output (modules/v_prediction.py): "v", read through the noise-dependent skip
    # ε̂ = √ᾱ·v̂ + √(1−ᾱ)·x_t, or "epsilon" directly (legacy files load as "epsilon").
    prediction: Literal["epsilon", "v"] = "v"
    kernel_size: int = 3  # odd, so bidirectional padding is centred
    mid_attention: bool = True
    ff_mult: int = 4  # feed-forward width in each attention block (0 = none)
    dropout: float = 0.0
    # Also add the prompt's mean token state to the time embedding (global conditioning, as
    # AudioLDM and Stable Audio do) beside cross-attention; the paper has cross-attention only.
    pooled_text: bool = False

    @property
    def downsample_factor(self) -> int:
        """Total time down-sampling; inputs are padded at the end to a multiple of it."""
        total = 1
        for f in self.factors:
            total *= f
        return total

    def validate(self) -> None:
        """Raise ValueError if the U-Net shape is inconsistent."""
        n = len(self.channels)
        if n == 0 or not len(self.factors) == len(self.res_blocks) == len(self.attention) == n:
            raise ValueError("channels, factors, res_blocks and attention need one entry per level")
        if any(f < 1 for f in self.factors) or any(r < 1 for r in self.res_blocks):
            raise ValueError("factors and res_blocks must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.norm not in ("group", "layer", "rms"):
            raise ValueError(f"unknown unet.norm {self.norm!r}; choose group, layer or rms")
        if self.prediction not in ("epsilon", "v"):
            raise ValueError(f"unknown unet.prediction {self.prediction!r}; choose epsilon or v")
        if self.norm == "group" and any(c % self.norm_groups for c in self.channels):
            raise ValueError("every entry of channels must be divisible by norm_groups")
        attended = [c for c, a in zip(self.channels, self.attention, strict=True) if a]
        if self.mid_attention:
            attended.append(self.channels[-1])
        if any(c % self.head_dim for c in attended):
            raise ValueError("channels of attention levels must be multiples of head_dim")


@dataclass
class TextEncoderConfig:
    """A frozen Hugging Face encoder. ``name_or_path`` may be relative to the model folder."""

    name_or_path: str = "google/flan-t5-large"
    max_length: int = 128
    hidden_size: int = 1024
    revision: str | None = None


@dataclass
class DiffusionConfig:
    """ε-prediction diffusion (§3.2) and the multi-task training recipe (§4.3, §5)."""

    num_train_timesteps: int = 1000
    # Latent diffusion's schedule (Rombach et al. 2022), which the paper follows for the variance.
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    scheduler: str = "dpmsolver++"  # one of jen1cli.diffusion.schedule.SCHEDULERS
    timestep_spacing: str = "trailing"  # diffusers' spacing: sampling starts at t = T - 1
    num_inference_steps: int = 50
    guidance_scale: float = 3.0
    cond_drop_prob: float = 0.2  # §5: cross-attention replaced by self-attention with p = 0.2
    mask_ratio_min: float = 0.2  # §4.3: inpainting and continuation masks cover 20–80 %
    mask_ratio_max: float = 0.8
    max_inpaint_spans: int = 3
    # Weight of the known (in-context) frames in the ε-MSE; generated ones weigh 1 (objective.py).
    known_frames_loss_weight: float = 1.0
    # "uniform": the paper's plain ε-MSE (eq. 5). "min_snr": each sample's ε-MSE weighted by
    # min(SNR(t), γ) / SNR(t) (Hang et al. 2023), which stops the nearly clean, low-noise steps
    # from dominating the gradient; γ = ``min_snr_gamma``.
    loss_weighting: Literal["uniform", "min_snr"] = "uniform"
    min_snr_gamma: float = 5.0


@dataclass
class Jen1Config:
    """A whole model: every part's config plus the training window length."""

    name: str = "jen1"
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    whitener: WhitenerConfig = field(default_factory=WhitenerConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    window_seconds: float = 10.0  # the clip length the diffusion model is trained on

    _PARTS = {
        "autoencoder": AutoencoderConfig,
        "whitener": WhitenerConfig,
        "unet": UNetConfig,
        "text_encoder": TextEncoderConfig,
        "diffusion": DiffusionConfig,
    }

    @property
    def sample_rate(self) -> int:
        return self.autoencoder.sample_rate

    @property
    def window_frames(self) -> int:
        return round(self.window_seconds * self.autoencoder.frame_rate)

    def validate(self) -> None:
        """Raise ValueError if the parts do not fit together."""
        if self.whitener.latent_dim != self.autoencoder.latent_dim:
            raise ValueError("whitener.latent_dim must equal autoencoder.latent_dim")
        if not 0 < self.whitener.keep_dim <= self.whitener.latent_dim:
            raise ValueError("whitener.keep_dim must be in 1..latent_dim")
        if self.unet.latent_channels != self.whitener.keep_dim:
            raise ValueError("unet.latent_channels must equal whitener.keep_dim")
        if self.unet.context_dim != self.text_encoder.hidden_size:
            raise ValueError("unet.context_dim must equal text_encoder.hidden_size")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # Fields added after model folders were published, with the value those folders were built
    # with: a config.json that does not name one loads as it was trained.
    _LEGACY_DEFAULTS = {"unet": {"norm": "group", "prediction": "epsilon"}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Jen1Config:
        data = dict(data)
        for part, legacy in cls._LEGACY_DEFAULTS.items():
            data[part] = {**legacy, **data.get(part, {})}
        parts = {k: _from_dict(c, data.pop(k, {})) for k, c in cls._PARTS.items()}
        config = _from_dict(cls, {**data, **parts})
        config.validate()
        return config

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Jen1Config:
        return cls.from_dict(json.loads(Path(path).read_text()))
