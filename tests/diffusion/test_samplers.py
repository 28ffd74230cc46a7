"""Our samplers and noise schedule against the diffusers schedulers they replace.

diffusers is a test dependency only: these tests build its schedulers exactly as
``jen1cli.diffusion.schedule`` built them before (the reference) and run both side by side.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)
from torch import nn

from jen1cli.config import DiffusionConfig
from jen1cli.diffusion.noise_schedule import NoiseSchedule
from jen1cli.diffusion.samplers import SAMPLERS, SPACINGS, Sampler, spaced_timesteps
from jen1cli.diffusion.sampling import first_step, sample
from jen1cli.diffusion.schedule import SCHEDULERS, make_noise_scheduler, make_sampling_scheduler

K, T = 4, 16
STEP_COUNTS = (1, 3, 10, 25, 50)
# Step counts where diffusers' trailing arange has one value too many (t = −1): compared on the
# first ``steps`` timesteps only.
TRAILING_EXTRA = (61, 103)


def reference(config: DiffusionConfig, name: str):
    """The diffusers scheduler ``make_sampling_scheduler`` returned before our samplers."""
    kwargs = {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": config.beta_schedule,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "prediction_type": "epsilon",
        "timestep_spacing": config.timestep_spacing,
    }
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddim":
        return DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=True)
    return EulerDiscreteScheduler(**kwargs)


def fake_eps(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, deterministic stand-in for the U-Net: ε̂ = f(z_t, t), fractional t allowed."""
    t = t.float()
    return torch.tanh(1.5 * z) + 0.3 * torch.sin(z + t / 150) - 0.1 * torch.cos(t / 400)


def start_noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, K, T, generator=torch.Generator().manual_seed(seed))


def run_ours(sampler: Sampler, x: torch.Tensor, begin: int = 0) -> list[torch.Tensor]:
    """The latents after each step (the loop of ``sample()``, without the network plumbing)."""
    out = []
    for t in sampler.timesteps[begin:]:
        eps = fake_eps(sampler.scale_model_input(x), t)
        x = sampler.step(eps, x)
        out.append(x)
    return out


def run_reference(scheduler, x: torch.Tensor, begin: int = 0) -> list[torch.Tensor]:
    out = []
    for t in scheduler.timesteps[begin:]:
        eps = fake_eps(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x).prev_sample
        out.append(x)
    return out


def assert_same_trajectory(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, i=i: f"step {i}: {m}")


def assert_same_from_pure_noise(config: DiffusionConfig, name: str, steps: int, x) -> None:
    ours, theirs = make_sampling_scheduler(config, name), reference(config, name)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    x_ours, x_theirs = x * ours.init_noise_sigma, x * theirs.init_noise_sigma
    assert_same_trajectory(run_ours(ours, x_ours), run_reference(theirs, x_theirs))


# --- timesteps --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_equal_diffusers(name, spacing):
    config = DiffusionConfig(timestep_spacing=spacing)
    for steps in (*STEP_COUNTS, 2, 7, 15, 16, 30, 48, 96, 100, 250, 999, 1000, *TRAILING_EXTRA):
        ours, theirs = make_sampling_scheduler(config, name), reference(config, name)
        ours.set_timesteps(steps)
        theirs.set_timesteps(steps)
        assert ours.timesteps.dtype == theirs.timesteps.dtype
        assert len(ours.timesteps) == steps
        if spacing == "trailing" and steps in TRAILING_EXTRA:
            assert len(theirs.timesteps) == steps + 1 and int(theirs.timesteps[-1]) == -1
        assert torch.equal(ours.timesteps, theirs.timesteps[:steps]), (steps, ours.timesteps)
        if not (spacing == "trailing" and steps in TRAILING_EXTRA):
            # rel 1e-4: diffusers' float32 1 − ᾱ_t loses digits near t = 0 (Euler, 1 linspace step)
            expected = float(theirs.init_noise_sigma)
            assert ours.init_noise_sigma == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_stay_in_range_and_go_down(spacing):
    for steps in range(1, 1001):
        for skip_zero in (False, True):
            ts = spaced_timesteps(1000, steps, spacing, skip_zero=skip_zero)
            assert len(ts) == steps and 0 <= min(ts) and max(ts) <= 999
            assert ts == sorted(ts, reverse=True)
    assert spaced_timesteps(1000, 4, "trailing", skip_zero=False) == [999, 749, 499, 249]


# --- trajectories -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_trajectory_matches_diffusers(name, spacing, steps):
    config = DiffusionConfig(timestep_spacing=spacing)
    assert_same_from_pure_noise(config, name, steps, start_noise())


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_trajectory_matches_diffusers_on_other_betas(name, schedule):
    config = DiffusionConfig(beta_schedule=schedule, beta_start=0.0001, beta_end=0.02)
    assert_same_from_pure_noise(config, name, 20, start_noise(3))


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps, strength", [(10, 0.6), (25, 0.3), (50, 0.9), (3, 0.5)])
def test_partial_denoise_matches_diffusers(name, spacing, steps, strength):
    # As sample() and diffusers' img2img pipelines do it: noise the start to the first step that
    # runs, tell the solver where it begins, then step to the end.
    config = DiffusionConfig(timestep_spacing=spacing)
    begin = first_step(strength, steps)
    assert 0 < begin < steps
    clean, noise = start_noise(1), start_noise(2)
    ours, theirs = make_sampling_scheduler(config, name), reference(config, name)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    ours.set_begin_index(begin)
    if hasattr(theirs, "set_begin_index"):  # diffusers' DDIM has none (it is stateless)
        theirs.set_begin_index(begin)
    x_ours = ours.add_noise(clean, noise)
    x_theirs = theirs.add_noise(clean, noise, theirs.timesteps[begin : begin + 1])
    torch.testing.assert_close(x_ours, x_theirs, rtol=1e-5, atol=1e-5)
    assert_same_trajectory(run_ours(ours, x_ours, begin), run_reference(theirs, x_theirs, begin))


class FakeUNet(nn.Module):
    """``fake_eps`` behind OmniUNet1d's signature."""

    def forward(self, sample, timestep, masked_latent, mask, *args, causal=False):
        return fake_eps(sample, timestep.view(-1, 1, 1))


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_sample_matches_the_diffusers_loop(name, strength):
    """sample() end to end (start scale, input scaling, partial start) against diffusers."""
    steps, seed = 12, 4
    init = start_noise(5)
    out = sample(
        FakeUNet(),
        shape=(2, K, T),
        scheduler=name,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        init_latents=init,
        strength=strength,
    )
    theirs = reference(DiffusionConfig(), name)
    theirs.set_timesteps(steps)
    x = torch.randn(2, K, T, generator=torch.Generator().manual_seed(seed))
    begin = first_step(strength, steps)
    if begin == 0:
        x = x * theirs.init_noise_sigma
    else:
        if hasattr(theirs, "set_begin_index"):
            theirs.set_begin_index(begin)
        x = theirs.add_noise(init, x, theirs.timesteps[begin : begin + 1])
    torch.testing.assert_close(out, run_reference(theirs, x, begin)[-1], rtol=1e-5, atol=1e-5)


# --- the training schedule --------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["scaled_linear", "linear"])
def test_noise_schedule_matches_ddpm(schedule):
    config = DiffusionConfig(beta_schedule=schedule)
    ours = make_noise_scheduler(config)
    theirs = DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        prediction_type="epsilon",
        clip_sample=False,
    )
    assert isinstance(ours, NoiseSchedule) and ours.config.num_train_timesteps == 1000
    assert ours.alphas_cumprod.shape == (1000,)
    assert ours.alphas_cumprod.dtype == torch.float64
    reference_table = theirs.alphas_cumprod.double()
    torch.testing.assert_close(ours.alphas_cumprod, reference_table, rtol=1e-6, atol=0)
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(6, K, T, generator=g), torch.randn(6, K, T, generator=g)
    timesteps = torch.tensor([0, 1, 250, 500, 998, 999])
    noisy = ours.add_noise(clean, noise, timesteps)
    assert noisy.dtype == torch.float32
    torch.testing.assert_close(
        noisy, theirs.add_noise(clean, noise, timesteps), rtol=1e-5, atol=1e-6
    )
    # One timestep for the whole batch broadcasts, as in diffusers.
    one = ours.add_noise(clean, noise, torch.tensor(500))
    torch.testing.assert_close(one, theirs.add_noise(clean, noise, torch.tensor(500)))


def test_add_noise_keeps_the_latents_dtype():
    schedule = make_noise_scheduler(DiffusionConfig())
    clean = torch.randn(2, K, T, dtype=torch.bfloat16)
    noisy = schedule.add_noise(clean, torch.randn_like(clean), torch.tensor([10, 900]))
    assert noisy.dtype == torch.bfloat16


# --- the API's edges ----------------------------------------------------------------------------
def test_samplers_are_the_scheduler_names():
    assert tuple(SAMPLERS) == SCHEDULERS
    for name in SCHEDULERS:
        assert make_sampling_scheduler(DiffusionConfig(), name).name == name


def test_bad_step_counts_and_spacings_are_refused():
    sampler = make_sampling_scheduler(DiffusionConfig(), "dpmsolver++")
    for steps in (0, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            sampler.set_timesteps(steps)
    with pytest.raises(ValueError, match="trailing, leading, linspace"):
        make_sampling_scheduler(DiffusionConfig(timestep_spacing="karras"), "ddim")
    with pytest.raises(ValueError, match="unknown beta_schedule 'cosine'; choose one of: linear"):
        make_noise_scheduler(DiffusionConfig(beta_schedule="cosine"))


@pytest.mark.parametrize("name", SCHEDULERS)
def test_steps_need_timesteps_and_stop_at_the_end(name):
    sampler = make_sampling_scheduler(DiffusionConfig(), name)
    x = start_noise()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sampler.step(x, x)
    sampler.set_timesteps(2)
    run_ours(sampler, x)
    with pytest.raises(RuntimeError, match="steps are done"):
        sampler.step(x, x)
    with pytest.raises(ValueError, match="begin index"):
        sampler.set_begin_index(2)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_set_timesteps_starts_a_new_run(name):
    """A reused sampler forgets the previous run (the multistep history above all)."""
    sampler = make_sampling_scheduler(DiffusionConfig(), name)
    sampler.set_timesteps(5)
    first = run_ours(sampler, start_noise() * sampler.init_noise_sigma)
    sampler.set_timesteps(5)
    assert torch.equal(run_ours(sampler, start_noise() * sampler.init_noise_sigma)[-1], first[-1])


def test_config_is_kept_for_copies():
    config = dataclasses.replace(DiffusionConfig(), timestep_spacing="leading")
    sampler = make_sampling_scheduler(config, "euler")
    copy = type(sampler)(sampler.config)
    copy.set_timesteps(4)
    assert sampler.num_inference_steps is None and copy.timesteps.tolist() == [750, 500, 250, 0]
    assert copy.init_noise_sigma == pytest.approx(math.sqrt(copy._sigmas[0] ** 2 + 1))


def test_runtime_does_not_import_diffusers():
    """The commands' import path stays free of diffusers (3.4 s of a CPU `jen1 generate`)."""
    code = (
        "import sys\n"
        "import jen1cli.pipeline, jen1cli.diffusion.sampling, jen1cli.diffusion.objective\n"
        "import jen1cli.training.trainer, jen1cli.cli\n"
        "from jen1cli.diffusion.schedule import make_noise_scheduler, make_sampling_scheduler\n"
        "from jen1cli.config import DiffusionConfig\n"
        "make_noise_scheduler(DiffusionConfig()); make_sampling_scheduler(DiffusionConfig())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'diffusers')\n"
        "print(bad[:5])\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
