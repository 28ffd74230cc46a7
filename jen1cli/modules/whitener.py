"""Latent whitening (JEN-1 Algorithm 1): zero mean, identity covariance, k main directions.

Statistics are accumulated batch by batch in float64 (count, sum, sum of outer products), so a
whole data set can be streamed through the autoencoder once. ``fit`` then takes the SVD of the
covariance Σ = U Λ Uᵀ and keeps W = (U Λ^-½)[:, :k]; ``forward`` is (z − μ) W and ``inverse`` maps
back through W's pseudo-inverse Λ_k^½ U_kᵀ. Everything lives in float64 buffers, so the
statistics travel with the model's state_dict / safetensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from jen1cli.config import WhitenerConfig


class Whitener(nn.Module):
    """Streaming latent whitener with dimension reduction (Algorithm 1)."""

    # Annotations for the registered buffers, so type checkers know their types.
    count: Tensor
    shift: Tensor
    sum: Tensor
    sum_outer: Tensor
    mean: Tensor
    eigenvalues: Tensor
    transform: Tensor
    inverse_transform: Tensor
    is_fitted: Tensor

    def __init__(self, config: WhitenerConfig) -> None:
        super().__init__()
        d, k = config.latent_dim, config.keep_dim
        if not 0 < k <= d:
            raise ValueError(f"keep_dim must be in 1..latent_dim ({d}), got {k}")
        if config.eps <= 0:
            raise ValueError(f"eps must be positive, got {config.eps}")
        self.config = config
        f64 = torch.float64
        # Running statistics. Sums are taken of (z − shift), where shift is the first batch's
        # mean: E[xxᵀ] − E[x]E[x]ᵀ then cancels far less when the latents sit far from zero.
        self.register_buffer("count", torch.zeros((), dtype=f64))
        self.register_buffer("shift", torch.zeros(d, dtype=f64))
        self.register_buffer("sum", torch.zeros(d, dtype=f64))
        self.register_buffer("sum_outer", torch.zeros(d, d, dtype=f64))
        # The fitted transform.
        self.register_buffer("mean", torch.zeros(d, dtype=f64))
        self.register_buffer("eigenvalues", torch.zeros(d, dtype=f64))
        self.register_buffer("transform", torch.zeros(d, k, dtype=f64))
        self.register_buffer("inverse_transform", torch.zeros(k, d, dtype=f64))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` has computed the transform (or a fitted state_dict was loaded)."""
        return bool(self.is_fitted)

    @torch.no_grad()
    def update(self, latents: Tensor) -> None:
        """Accumulate the statistics of a batch of latent frames [B, D, T] in float64."""
        d = self.config.latent_dim
        if latents.dim() != 3 or latents.shape[1] != d:
            raise ValueError(f"expected latents [B, {d}, T], got {tuple(latents.shape)}")
        # [B, D, T] -> [N, D]: every frame is one sample.
        x = latents.detach().to(self.sum.device, torch.float64).transpose(1, 2).reshape(-1, d)
        if x.shape[0] == 0:
            return
        if not torch.isfinite(x).all():
            raise ValueError("latents contain NaN or infinite values")
        if self.count == 0:
            self.shift.copy_(x.mean(0))
        x = x - self.shift
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.sum_outer += x.T @ x

    def covariance(self) -> Tensor:
        """The unbiased covariance [D, D] (float64) of all frames seen so far."""
        n = float(self.count)
        if n < 2:
            raise RuntimeError(f"need at least 2 latent frames to estimate a covariance, got {n:g}")
        centred_sum = self.sum / n
        cov = (self.sum_outer - n * torch.outer(centred_sum, centred_sum)) / (n - 1)
        return (cov + cov.T) / 2  # exact symmetry, whatever the rounding

    @torch.no_grad()
    def fit(self) -> None:
        """Compute μ, W = (U Λ^-½)[:, :k] and its pseudo-inverse from the accumulated statistics."""
        k = self.config.keep_dim
        cov = self.covariance()
        # Σ is symmetric PSD, so its SVD is its eigendecomposition, sorted by decreasing variance.
        u, lam, _ = torch.linalg.svd(cov)
        # Fix each direction's sign (largest entry positive) so equal statistics give equal W.
        pivot = u.abs().argmax(dim=0)
        signs = torch.sign(u[pivot, torch.arange(u.shape[1], device=u.device)])
        u = u * torch.where(signs == 0, torch.ones_like(signs), signs)
        # Tiny (or rounding-negative) eigenvalues would blow up Λ^-½: floor them at eps.
        scale = lam.clamp_min(self.config.eps).sqrt()
        u_k, scale_k = u[:, :k], scale[:k]
        self.mean.copy_(self.shift + self.sum / float(self.count))
        self.eigenvalues.copy_(lam)
        self.transform.copy_(u_k / scale_k)  # [D, k] = U_k Λ_k^-½
        # U_k has orthonormal columns, so W⁺ = Λ_k^½ U_kᵀ exactly.
        self.inverse_transform.copy_(scale_k[:, None] * u_k.T)  # [k, D]
        self.is_fitted.fill_(True)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(
                "Whitener is not fitted: call update() on latents and then fit(), "
                "or load fitted statistics with load_state_dict()"
            )

    @staticmethod
    def _compute_dtype(z: Tensor) -> torch.dtype:
        # Half-precision inputs are whitened in float32; float64 stays float64.
        return torch.float64 if z.dtype == torch.float64 else torch.float32

    def forward(self, z: Tensor) -> Tensor:
        """Whiten latents: [B, D, T] -> [B, k, T], (z − μ) W per frame, in the input's dtype."""
        self._check_fitted()
        d = self.config.latent_dim
        if z.dim() != 3 or z.shape[1] != d:
            raise ValueError(f"expected latents [B, {d}, T], got {tuple(z.shape)}")
        dt = self._compute_dtype(z)
        mean = self.mean.to(z.device, dt)[None, :, None]
        w = self.transform.to(z.device, dt)
        out = torch.einsum("bdt,dk->bkt", z.to(dt) - mean, w)
        return out.to(z.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        """Map whitened latents back: [B, k, T] -> [B, D, T], μ + z W⁺, in the input's dtype."""
        self._check_fitted()
        k = self.config.keep_dim
        if z.dim() != 3 or z.shape[1] != k:
            raise ValueError(f"expected whitened latents [B, {k}, T], got {tuple(z.shape)}")
        dt = self._compute_dtype(z)
        mean = self.mean.to(z.device, dt)[None, :, None]
        w_inv = self.inverse_transform.to(z.device, dt)
        out = torch.einsum("bkt,kd->bdt", z.to(dt), w_inv) + mean
        return out.to(z.dtype)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Whitener:
        # Moving the whole model to bf16/fp16 must not round the statistics: follow device
        # changes but keep every buffer's own dtype (float64 statistics, bool flag).
        for name, buf in self._buffers.items():
            if buf is None:
                continue
            moved = fn(buf)
            self._buffers[name] = moved if moved.dtype == buf.dtype else buf.to(moved.device)
        return self

    def extra_repr(self) -> str:
        c = self.config
        return f"latent_dim={c.latent_dim}, keep_dim={c.keep_dim}, fitted={self.fitted}"
