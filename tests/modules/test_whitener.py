"""Whitener (Algorithm 1): identity covariance, streaming = one-shot, round trips, reloads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from jen1cli.config import WhitenerConfig
from jen1cli.modules.whitener import Whitener

D = 16


def correlated_latents(seed: int = 0, batches: int = 5, b: int = 4, t: int = 600) -> list[Tensor]:
    """Batches [b, D, t] of correlated frames: a random mixing of per-channel-scaled noise."""
    g = torch.Generator().manual_seed(seed)
    # Distinct per-direction scales make the spectrum well separated (stable SVD order).
    scales = torch.logspace(1, -1, D, dtype=torch.float64)
    mixing = torch.randn(D, D, generator=g, dtype=torch.float64)
    offset = 3.0 + torch.randn(D, generator=g, dtype=torch.float64)
    out = []
    for _ in range(batches):
        noise = torch.randn(b, t, D, generator=g, dtype=torch.float64) * scales
        frames = noise @ mixing.T + offset  # [b, t, D]
        out.append(frames.transpose(1, 2).float())  # [b, D, t]
    return out


def fitted_whitener(batches: list[Tensor], keep_dim: int) -> Whitener:
    w = Whitener(WhitenerConfig(latent_dim=D, keep_dim=keep_dim))
    for x in batches:
        w.update(x)
    w.fit()
    return w


def frames(x: Tensor) -> Tensor:
    """[B, C, T] -> [B*T, C] float64."""
    return x.transpose(1, 2).reshape(-1, x.shape[1]).double()


@pytest.mark.parametrize("keep_dim", [D, D - 3])
def test_whitened_covariance_is_identity(keep_dim: int) -> None:
    batches = correlated_latents()
    assert sum(x.shape[0] * x.shape[2] for x in batches) >= 10_000
    # The raw data really are correlated, so the test could fail.
    raw_cov = torch.cov(frames(torch.cat(batches)).T)
    assert (raw_cov - torch.diag(raw_cov.diag())).abs().max() > 1.0

    w = fitted_whitener(batches, keep_dim)
    z = torch.cat([w(x.double()) for x in batches])  # [B, k, T]
    assert z.shape[1] == keep_dim
    cov = torch.cov(frames(z).T)
    off = cov - torch.diag(cov.diag())
    assert off.abs().max() < 1e-3
    assert (cov.diag() - 1).abs().max() < 1e-3
    assert frames(z).mean(0).abs().max() < 1e-6


def test_incremental_statistics_equal_one_shot() -> None:
    batches = correlated_latents()
    streamed = fitted_whitener(batches, D - 3)
    one_shot = fitted_whitener([torch.cat(batches, dim=0)], D - 3)

    x = frames(torch.cat(batches))
    ref_mean, ref_cov = x.mean(0), torch.cov(x.T)
    for w in (streamed, one_shot):
        torch.testing.assert_close(w.mean, ref_mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(w.covariance(), ref_cov, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(streamed.transform, one_shot.transform, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(
        streamed.inverse_transform, one_shot.inverse_transform, rtol=1e-8, atol=1e-10
    )


def test_inverse_is_projection_on_kept_subspace() -> None:
    batches = correlated_latents()
    k = D - 4
    w = fitted_whitener(batches, k)
    z = batches[0].double()
    back = w.inverse(w(z))

    # P = U_k U_kᵀ from an independent eigendecomposition of the covariance.
    evals, evecs = torch.linalg.eigh(w.covariance())
    u_k = evecs[:, evals.argsort(descending=True)[:k]]
    proj = u_k @ u_k.T
    mu = w.mean[None, :, None]
    expected = mu + torch.einsum("de,bet->bdt", proj, z - mu)
    torch.testing.assert_close(back, expected, rtol=1e-9, atol=1e-9)
    # And the dropped part is really lost, so the check above is not vacuous.
    assert (back - z).abs().max() > 1e-3


def test_inverse_is_exact_when_nothing_is_dropped() -> None:
    batches = correlated_latents()
    w = fitted_whitener(batches, D)
    z = batches[1]
    torch.testing.assert_close(w.inverse(w(z.double())), z.double(), rtol=1e-10, atol=1e-10)
    back32 = w.inverse(w(z))
    assert back32.dtype == torch.float32
    torch.testing.assert_close(back32, z, rtol=1e-4, atol=1e-4)


def test_kept_directions_have_the_largest_variance() -> None:
    batches = correlated_latents()
    k = D - 5
    w = fitted_whitener(batches, k)
    evals = torch.linalg.eigvalsh(w.covariance()).flip(0)  # descending
    torch.testing.assert_close(w.eigenvalues, evals, rtol=1e-9, atol=1e-12)
    # Each kept column of W, normalised, is a direction whose variance is a top-k eigenvalue.
    u_k = w.transform / w.transform.norm(dim=0)
    kept_var = torch.einsum("dk,de,ek->k", u_k, w.covariance(), u_k)
    torch.testing.assert_close(kept_var, evals[:k], rtol=1e-9, atol=1e-12)
    assert kept_var.min() > evals[k:].max()


def test_state_dict_round_trip_through_safetensors(tmp_path) -> None:
    batches = correlated_latents()
    w = fitted_whitener(batches, D - 2)
    path = tmp_path / "whitener.safetensors"
    save_file(w.state_dict(), str(path))
    state = load_file(str(path))
    assert state["transform"].dtype == torch.float64

    fresh = Whitener(WhitenerConfig(latent_dim=D, keep_dim=D - 2))
    assert not fresh.fitted
    fresh.load_state_dict(state)
    assert fresh.fitted
    z = batches[2]
    assert torch.equal(fresh(z), w(z))
    y = w(z)
    assert torch.equal(fresh.inverse(y), w.inverse(y))


def test_not_fitted_raises() -> None:
    w = Whitener(WhitenerConfig(latent_dim=D, keep_dim=D - 1))
    z = torch.randn(1, D, 8)
    with pytest.raises(RuntimeError, match="not fitted"):
        w(z)
    with pytest.raises(RuntimeError, match="not fitted"):
        w.inverse(torch.randn(1, D - 1, 8))
    with pytest.raises(RuntimeError, match="at least 2"):
        w.fit()


def test_bad_shapes_and_config_are_refused() -> None:
    with pytest.raises(ValueError):
        Whitener(WhitenerConfig(latent_dim=8, keep_dim=9))
    w = fitted_whitener(correlated_latents(batches=1), D)
    with pytest.raises(ValueError):
        w.update(torch.randn(2, D + 1, 4))
    with pytest.raises(ValueError):
        w(torch.randn(2, D - 1, 4))
    with pytest.raises(ValueError):
        w.update(torch.full((1, D, 2), float("nan")))


def test_degenerate_directions_are_guarded() -> None:
    # Rank-deficient data (two channels always zero): eps keeps W finite.
    x = torch.randn(2, D, 500, generator=torch.Generator().manual_seed(1))
    x[:, :2] = 0
    w = fitted_whitener([x], D)
    assert torch.isfinite(w.transform).all()
    assert torch.isfinite(w(x)).all()


def test_casting_the_module_keeps_float64_statistics() -> None:
    batches = correlated_latents(batches=1)
    w = fitted_whitener(batches, D - 1)
    ref = w.transform.clone()
    w.to(torch.bfloat16)
    assert w.transform.dtype == torch.float64 and torch.equal(w.transform, ref)
    assert w.is_fitted.dtype == torch.bool
    out = w(batches[0].to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (4, D - 1, 600)
