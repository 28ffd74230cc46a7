"""`jen1 inpaint`, `jen1 continue` and `jen1 remix`: regenerate spans of a recording, extend it,
or re-imagine it with a prompt."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Annotated

import typer

from jen1cli import __version__
from jen1cli.commands.common import (
    BadInput,
    CfgOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    NegativePromptOpt,
    OutputOpt,
    OverwriteOpt,
    PromptOpt,
    QuietOpt,
    SchedulerOpt,
    SeedOpt,
    StepsOpt,
    check_duration,
    check_file_duration,
    check_negative_prompt,
    check_output,
    check_scheduler,
    guidance_of,
    load_pipeline,
    progress_bars,
    resolve_device_and_dtype,
    write_sidecar,
)
from jen1cli.commands.session import note

InputArg = Annotated[
    Path, typer.Argument(help="Audio file (WAV, FLAC, OGG…; any rate, mono or stereo).")
]
MaskOpt = Annotated[
    list[str],
    typer.Option("--mask", help="Span to regenerate, START-END in seconds; repeatable."),
]
_SPAN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*-\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def parse_span(text: str) -> tuple[float, float]:
    """``"4.0-6.5"`` -> (4.0, 6.5) seconds; anything else is a BadInput showing the right form."""
    match = _SPAN.match(text)
    if not match:
        raise BadInput(
            f"--mask '{text}' is not a span: write START-END in seconds, e.g. --mask 4.0-6.5"
        )
    start, end = float(match[1]), float(match[2])
    if end <= start:
        raise BadInput(
            f"--mask '{text}' ends before it starts: write START-END with START < END, e.g. 4-6"
        )
    return start, end


def merge_spans(spans: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], bool]:
    """Sort and merge overlapping spans; also say whether any were merged."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged, len(merged) < len(spans)


def check_spans(masks: list[str], duration_s: float) -> list[tuple[float, float]]:
    """Parse, merge (with a note) and check ``--mask`` spans against the input's duration."""
    spans, merged = merge_spans([parse_span(m) for m in masks])
    for start, end in spans:
        if end > duration_s + 1e-6:
            raise BadInput(
                f"--mask {start:g}-{end:g} ends after the audio ({duration_s:.2f} s): "
                "keep every span inside the recording"
            )
    if merged:
        note(f"overlapping --mask spans merged into {_spans_text(spans)}")
    return spans


def _sampling(pipe, steps, cfg, scheduler, seed, negative_prompt):
    from jen1cli.pipeline import SamplingOptions

    check_negative_prompt(negative_prompt, guidance_of(pipe, cfg))
    seed = random.randrange(2**31) if seed is None else seed
    return SamplingOptions(
        steps=steps,
        guidance_scale=cfg,
        scheduler=scheduler,
        seed=seed,
        negative_prompt=negative_prompt,
    )


def _record(pipe, options, **fields) -> dict:
    diffusion = pipe.config.diffusion
    return {
        **fields,
        "negative_prompt": options.negative_prompt,
        "seed": options.seed,
        "steps": options.steps or diffusion.num_inference_steps,
        "guidance_scale": diffusion.guidance_scale
        if options.guidance_scale is None
        else options.guidance_scale,
        "scheduler": options.scheduler or diffusion.scheduler,
        "dtype": pipe.unet_dtype_name,
        "model": pipe.model.source,
        "jen1_version": __version__,
    }


def _load(path: Path, sample_rate: int):
    from jen1cli.audio import load_audio

    audio, info = load_audio(path, sample_rate=sample_rate, channels=2)
    if info.note:
        note(f"{path.name}: {info.note}")
    return audio, info


def inpaint(
    input: InputArg,
    mask: MaskOpt,
    prompt: PromptOpt = "",
    negative_prompt: NegativePromptOpt = None,
    output: OutputOpt = None,
    model: ModelOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Regenerate time spans of a recording; everything outside them stays as it was.

    Example: jen1 inpaint song.wav --mask 4.0-6.5 --prompt "piano solo" -o fixed.wav
    """
    from jen1cli.audio_header import audio_info  # the header alone: no torch yet

    check_scheduler(scheduler)
    check_negative_prompt(negative_prompt, cfg)
    info = audio_info(input)
    check_file_duration(info.duration_s)
    spans = check_spans(mask, info.duration_s)
    output = check_output(output or input.with_name(f"{input.stem}.inpainted.wav"), overwrite)
    device, dtype = resolve_device_and_dtype(device, dtype)
    pipe = load_pipeline(model, device, dtype)
    options = _sampling(pipe, steps, cfg, scheduler, seed, negative_prompt)
    audio, _ = _load(input, pipe.sample_rate)
    with progress_bars(quiet) as callback:
        result = pipe.inpaint(audio, spans, prompt, options, callback)
    record = dict(task="inpaint", input=str(input), prompt=prompt, spans=spans)
    _save(output, result, pipe, overwrite, _record(pipe, options, **record))
    typer.echo(str(output))


def continue_(
    input: InputArg,
    seconds: Annotated[
        float, typer.Option("--seconds", "-s", help="Seconds of new music to add.")
    ] = 10.0,
    prompt: PromptOpt = "",
    negative_prompt: NegativePromptOpt = None,
    output: OutputOpt = None,
    model: ModelOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Extend a recording with new music (past the model's window too, window by window).

    Example: jen1 continue intro.wav --seconds 20 --prompt "upbeat funk" -o longer.wav
    """
    from jen1cli.audio_header import audio_info  # the header alone: no torch yet

    check_duration(seconds, "--seconds")
    check_scheduler(scheduler)
    check_negative_prompt(negative_prompt, cfg)
    info = audio_info(input)
    check_file_duration(info.duration_s)
    output = check_output(output or input.with_name(f"{input.stem}.continued.wav"), overwrite)
    device, dtype = resolve_device_and_dtype(device, dtype)
    pipe = load_pipeline(model, device, dtype)
    options = _sampling(pipe, steps, cfg, scheduler, seed, negative_prompt)
    audio, _ = _load(input, pipe.sample_rate)
    with progress_bars(quiet) as callback:
        result = pipe.continue_(audio, seconds, prompt, options, callback)
    record = dict(task="continue", input=str(input), prompt=prompt, seconds=seconds)
    _save(output, result, pipe, overwrite, _record(pipe, options, **record))
    typer.echo(str(output))


def remix(
    input: InputArg,
    prompt: PromptOpt = "",
    strength: Annotated[
        float,
        typer.Option(
            "--strength",
            help="0-1: how much to change. Low keeps the input's form, 1 keeps only its length.",
        ),
    ] = 0.5,
    mask: Annotated[
        list[str] | None,
        typer.Option("--mask", help="Remix only this span, START-END in seconds; repeatable."),
    ] = None,
    negative_prompt: NegativePromptOpt = None,
    output: OutputOpt = None,
    model: ModelOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-imagine a recording with a prompt, at its length and loudness (audio-to-audio).

    Example: jen1 remix song.wav --prompt "jazz trio" --strength 0.5 -o song.jazz.wav
    """
    from jen1cli.audio_header import audio_info  # the header alone: no torch yet

    if not 0.0 <= strength <= 1.0:  # written out, so that NaN is refused too
        raise BadInput(
            f"--strength must be between 0 and 1 (0 keeps the input, 1 keeps only its length), "
            f"got {strength:g}"
        )
    check_scheduler(scheduler)
    check_negative_prompt(negative_prompt, cfg)
    info = audio_info(input)
    check_file_duration(info.duration_s)
    spans = check_spans(mask, info.duration_s) if mask else None
    output = check_output(output or input.with_name(f"{input.stem}.remixed.wav"), overwrite)
    device, dtype = resolve_device_and_dtype(device, dtype)
    pipe = load_pipeline(model, device, dtype)
    options = _sampling(pipe, steps, cfg, scheduler, seed, negative_prompt)
    audio, _ = _load(input, pipe.sample_rate)
    with progress_bars(quiet) as callback:
        result = pipe.remix(audio, prompt, strength, spans, options, callback)
    record = dict(task="remix", input=str(input), prompt=prompt, strength=strength, spans=spans)
    _save(output, result, pipe, overwrite, _record(pipe, options, **record))
    typer.echo(str(output))


def _save(output: Path, audio, pipe, overwrite: bool, record: dict) -> None:
    """The audio and its sidecar, published together: neither appears unless both are written."""
    from jen1cli.atomic_files import publish_together
    from jen1cli.audio import save_audio

    with publish_together():
        save_audio(output, audio, pipe.sample_rate, overwrite=overwrite)
        write_sidecar(output, record)


def _spans_text(spans: list[tuple[float, float]]) -> str:
    return ", ".join(f"{s:g}-{e:g}" for s, e in spans)
