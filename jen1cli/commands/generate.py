"""`jen1 generate`: text to loudness-normalised 48 kHz stereo WAV files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

import typer

from jen1cli import __version__
from jen1cli.commands.common import (
    BadInput,
    CfgOpt,
    DeviceOpt,
    DtypeOpt,
    LufsOpt,
    ModelOpt,
    NegativePromptOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    SchedulerOpt,
    SeedOpt,
    StepsOpt,
    check_duration,
    check_negative_prompt,
    check_output,
    check_scheduler,
    guidance_of,
    load_pipeline,
    progress_bars,
    resolve_device_and_dtype,
    slug,
    write_sidecar,
)

# A loop shorter than this holds barely a beat: refused as a likely slip (-d 0.1 for -d 10).
MIN_LOOP_SECONDS = 1.0


def output_paths(output: Path | None, prompt: str, count: int) -> list[Path]:
    """``out.wav`` for one clip; ``out-1.wav`` … ``out-N.wav`` for variations."""
    base = output or Path(f"{slug(prompt)}.wav")
    if base.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise BadInput(f"output {base} must end in .wav, .flac or .ogg")
    if count == 1:
        return [base]
    return [base.with_name(f"{base.stem}-{i}{base.suffix}") for i in range(1, count + 1)]


def generate(
    prompt: Annotated[str, typer.Argument(help="Text describing the music.")],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds of audio.")] = 10.0,
    output: OutputOpt = None,
    num: Annotated[
        int, typer.Option("--num", "-n", min=1, max=16, help="Variations, made in one batch.")
    ] = 1,
    model: ModelOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    lufs: LufsOpt = -14.0,
    loop: Annotated[
        bool, typer.Option("--loop", help="A loop: the file plays end-to-start with no seam.")
    ] = False,
    negative_prompt: NegativePromptOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make music from a text prompt.

    Example: jen1 generate "ambient synth pad" -d 10 -o pad.wav
    """
    check_duration(duration * num, "--duration × --num")
    if loop and duration < MIN_LOOP_SECONDS:
        raise BadInput(
            f"--loop needs a --duration of at least {MIN_LOOP_SECONDS:g} s, got {duration:g}"
        )
    check_scheduler(scheduler)
    check_negative_prompt(negative_prompt, cfg)
    paths = [check_output(p, overwrite) for p in output_paths(output, prompt, num)]
    device, dtype = resolve_device_and_dtype(device, dtype)
    seed = random.randrange(2**31) if seed is None else seed

    # Imported once the input is known to be good: torch alone takes seconds to load.
    from jen1cli.atomic_files import publish_together
    from jen1cli.audio import master, save_audio
    from jen1cli.loop import master_loop, steadiest_start
    from jen1cli.pipeline import SamplingOptions

    pipe = load_pipeline(model, device, dtype)
    check_negative_prompt(negative_prompt, guidance_of(pipe, cfg))
    options = SamplingOptions(
        steps=steps,
        guidance_scale=cfg,
        scheduler=scheduler,
        seed=seed,
        negative_prompt=negative_prompt,
    )
    with progress_bars(quiet) as callback:
        audio = pipe.generate([prompt] * num, duration, options, callback, loop=loop).cpu()
    diffusion = pipe.config.diffusion
    finish = master_loop if loop else master  # a loop is mastered around its wrap
    with publish_together():  # every file and sidecar, or none (a full disk, an interrupt)
        for index, (path, clip) in enumerate(zip(paths, audio, strict=True)):
            # A loop has no start of its own: the file begins at its steadiest moment.
            start = steadiest_start(clip, pipe.sample_rate) if loop else 0
            clip = finish(clip.roll(-start, dims=-1), pipe.sample_rate, lufs)
            save_audio(path, clip, pipe.sample_rate, overwrite=overwrite)
            write_sidecar(
                path,
                {
                    "prompt": prompt,
                    "negative_prompt": negative_prompt,
                    "loop": loop,
                    # where in the loop as sampled the file begins (its wrap, undone: roll by this)
                    "loop_start_s": start / pipe.sample_rate if loop else None,
                    "seed": seed,
                    "variation": index,
                    "duration_s": duration,
                    "steps": steps or diffusion.num_inference_steps,
                    "guidance_scale": diffusion.guidance_scale if cfg is None else cfg,
                    "scheduler": scheduler or diffusion.scheduler,
                    "dtype": pipe.unet_dtype_name,
                    "lufs": lufs,
                    "model": pipe.model.source,
                    "jen1_version": __version__,
                },
            )
    for path in paths:
        typer.echo(str(path))
