"""Jen1Pipeline on tensors: lengths, determinism, sample-exact preservation, windowed rollout."""

import pytest
import torch

from jen1cli.pipeline import Jen1Pipeline, SamplingOptions

SR = 48_000
FAST = SamplingOptions(steps=2, seed=3)


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Jen1Pipeline.from_pretrained(str(tiny_model_dir))


def _song(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * SR)) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t)
    return torch.stack([tone, tone * 0.8]) + 0.01 * torch.randn(2, t.numel(), generator=g)


def test_generate_has_exact_length_and_is_deterministic(pipe):
    a = pipe.generate(["pad", "drums"], 0.77, FAST)
    assert a.shape == (2, 2, round(0.77 * SR))
    assert torch.isfinite(a).all()
    assert torch.equal(a, pipe.generate(["pad", "drums"], 0.77, FAST))
    assert not torch.equal(
        a, pipe.generate(["pad", "drums"], 0.77, SamplingOptions(steps=2, seed=4))
    )


def test_generate_past_the_window_rolls_out(pipe):
    calls = []
    audio = pipe.generate(
        ["pad"], 2.5, FAST, lambda stage, done, total: calls.append((stage, done, total))
    )
    assert audio.shape == (1, 2, 2.5 * SR)
    # 1 s window at 150 frames/s, half kept as context: 150 + 75 * 3 >= 375 frames -> 4 windows
    assert sum(1 for c in calls if c[0] == "denoise" and c[1] == c[2]) == 4


def test_inpaint_keeps_everything_outside_the_spans(pipe):
    song = _song(0.9)
    spans = [(0.2, 0.35), (0.6, 0.7)]
    out = pipe.inpaint(song, spans, "piano", FAST)
    assert out.shape == song.shape
    keep = torch.ones(song.shape[-1], dtype=torch.bool)
    for s, e in spans:
        keep[round(s * SR) : round(e * SR)] = False
    assert torch.equal(out[:, keep], song[:, keep])
    for s, e in spans:  # the spans themselves were regenerated
        assert not torch.equal(
            out[:, round(s * SR) : round(e * SR)], song[:, round(s * SR) : round(e * SR)]
        )


def test_inpaint_in_a_song_longer_than_the_window(pipe):
    song = _song(2.4)
    out = pipe.inpaint(song, [(1.8, 2.0)], "", FAST)
    keep = torch.ones(song.shape[-1], dtype=torch.bool)
    keep[round(1.8 * SR) : round(2.0 * SR)] = False
    assert torch.equal(out[:, keep], song[:, keep])


def test_continue_keeps_the_input_and_rolls_past_the_window(pipe):
    song = _song(0.5)
    out = pipe.continue_(song, 1.8, "", FAST)
    n = song.shape[-1]
    fade = round(0.02 * SR)
    assert out.shape == (2, n + round(1.8 * SR))
    assert torch.equal(out[:, : n - fade], song[:, : n - fade])  # only the <= 50 ms seam may move
    assert out[:, n:].abs().sum() > 0
    assert torch.equal(out, pipe.continue_(song, 1.8, "", FAST))


def test_encode_decode_round_trip_length(pipe):
    song = _song(0.33)
    latents = pipe.encode(song[None])
    assert latents.shape == (1, 6, -(-song.shape[-1] // 320))
    assert pipe.decode(latents, song.shape[-1]).shape == (1, 2, song.shape[-1])


def test_bf16_unet_gets_bf16_inputs_and_everything_else_stays_float32(tiny_model_dir):
    """`--dtype bf16`: every floating input of every U-Net call is bfloat16 (also in a causal
    rollout past the window), the autoencoder only ever sees float32, and the audio is float32."""
    pipe = Jen1Pipeline.from_pretrained(str(tiny_model_dir)).with_unet_dtype("bf16")
    assert pipe.unet_dtype_name == "bf16"
    unet_in, codec_in = set(), set()

    def record(into):
        def hook(module, args, kwargs):
            tensors = [*args, *kwargs.values()]
            into.update(t.dtype for t in tensors if torch.is_tensor(t) and t.is_floating_point())

        return hook

    pipe.model.unet.register_forward_pre_hook(record(unet_in), with_kwargs=True)
    for part in (pipe.model.autoencoder.encoder, pipe.model.autoencoder.decoder):
        part.register_forward_pre_hook(record(codec_in), with_kwargs=True)
    options = SamplingOptions(steps=2, seed=0)
    audio = pipe.generate(["a tune"], 0.5, options)
    song = pipe.continue_(_song(0.5), 1.2, "a tune", options)  # past the 1 s window
    assert unet_in == {torch.bfloat16}
    assert codec_in == {torch.float32}
    assert audio.dtype == song.dtype == torch.float32
    assert torch.isfinite(audio).all() and torch.isfinite(song).all()
