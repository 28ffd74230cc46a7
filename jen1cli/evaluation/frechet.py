"""Fréchet distance between Gaussians fitted to two sets of embeddings (the "FAD" of FAD)."""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_stats(embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of [N, D] embeddings, in float64."""
    x = embeddings.detach().to(torch.float64).reshape(-1, embeddings.shape[-1])
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 embeddings, got {x.shape[0]}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½).

    Tr((Σ₁Σ₂)^½) is computed as the sum of the square roots of the eigenvalues of the symmetric
    matrix Σ₁^½ Σ₂ Σ₁^½ (same spectrum as Σ₁Σ₂), which stays real and stable where a general
    matrix square root of a near-singular product picks up imaginary noise.
    """
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # symmetric up to rounding; eigvalsh wants it exactly
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    value = diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt
    return float(value.clamp_min(0))


def frechet_distance_of(embeddings1: Tensor, embeddings2: Tensor) -> float:
    """The Fréchet distance between the Gaussians fitted to two embedding sets [N, D], [M, D]."""
    return frechet_distance(*gaussian_stats(embeddings1), *gaussian_stats(embeddings2))
