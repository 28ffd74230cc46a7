"""Fuzz every jen1 command that reads a file: mutated audio, broken model folders, broken latents.

    OMP_NUM_THREADS=1 python tools/fuzz/fuzz_inputs.py --cases 10000 --workers 2
    python tools/fuzz/fuzz_inputs.py --case 4711 --keep /tmp/case   # rerun one case, keep its files
    python tools/fuzz/fuzz_inputs.py --seeds ~/Music/*.flac          # also mutate real recordings

Each case builds one input (audio_cases.py, model_cases.py), runs one command in-process on a tiny
random model (typer's CliRunner: no new Python per case) and checks the contract of the README:
exit 0 with a valid output (the right rate, channels and length, finite samples, a sidecar where
there is one), or exit 2 with exactly one ``jen1: error:`` line on stderr and no file left behind;
never a traceback, an internal error, a partial or stray file, or a hang. Cases run in long-lived
worker processes; each case has a timeout (SIGALRM in the worker; a worker that stops answering is
killed and replaced) and the workers have a memory ceiling, so a runaway case cannot take the
machine. The summary counts cases, exit codes and each kind of failure; the exit status is 1 when
any case failed.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jen1cli.audio_guard import quiet_c_stderr

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SR = 48_000
TARGETS = {"audio": 70, "model": 15, "latent": 15}  # share of cases
AUDIO_COMMANDS = ["encode", "inpaint", "continue", "remix"]
MODEL_COMMANDS = ["generate", "encode", "decode", "inpaint"]
PROBLEMS = [
    "traceback",
    "internal error",
    "other exit code",
    "bad error line",
    "partial file",
    "invalid output",
    "stray stderr",
    "hang",
    "intact input refused",
]


@dataclass
class Result:
    """One case: what it ran, how it ended, and what broke the contract (empty: it held)."""

    index: int
    target: str = ""
    command: str = ""
    what: str = ""
    args: list[str] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    stderr: str = ""


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case; a BaseException, so no ``except Exception`` eats it."""


# --- the worker: a tiny model, a good latent file, then case after case --------------------------
class Workspace:
    """What every case of one worker shares: the jen1 app, a tiny model and a good latent file."""

    def __init__(self, root: Path, seeds: list[Path]) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers.utils import logging as hf_logging
        from typer.testing import CliRunner

        from jen1cli.cli import app
        from jen1cli.testing import write_tiny_model

        hf_logging.disable_progress_bar()  # write_tiny_model would draw one
        torch.set_num_threads(1)
        self.root, self.seeds, self.app, self.runner = root, seeds, app, CliRunner()
        self.model = write_tiny_model(root / "model")
        self.latents = self._good_latents(self.model, "good")
        # The same shapes, other weights: its latents must not decode with self.model.
        self.foreign = self._good_latents(write_tiny_model(root / "other-model", seed=1), "other")

    def _good_latents(self, model: Path, name: str) -> Path:
        import soundfile as sf
        from audio_cases import music

        wav = self.root / "latent-source.wav"
        sf.write(wav, music(random.Random(0), 0.7, SR, 2), SR, subtype="FLOAT")
        out = self.root / f"{name}.latent.safetensors"
        args = ["encode", str(wav), "-o", str(out), "--model", str(model), "--device", "cpu"]
        result = self.runner.invoke(self.app, [*args, "-q"])
        if result.exit_code != 0:
            raise RuntimeError(f"cannot make the seed latent file: {result.output}")
        return out


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _span(rng: random.Random, seconds: float) -> str:
    start = rng.uniform(0, max(0.0, seconds * 0.8))
    end = start + rng.uniform(0.02, max(0.03, seconds - start))
    return f"{start:.3f}-{end:.3f}"


def _build(ws: Workspace, index: int, seed: int, case: Path) -> tuple[Result, list[str], dict]:
    """The case's input files and command line; ``expect`` says what a valid output looks like."""
    from audio_cases import mutated_audio, write_seed
    from model_cases import broken_latents, broken_model

    rng = random.Random(f"{seed}:{index}")
    target = rng.choices(list(TARGETS), weights=list(TARGETS.values()))[0]
    inputs, outputs = case / "in", case / "out"
    inputs.mkdir(parents=True)
    outputs.mkdir()
    model, result = ws.model, Result(index, target)
    duration = 1.0
    if target == "audio":
        command = rng.choice(AUDIO_COMMANDS)
        source, result.what, audio_seed = mutated_audio(inputs, rng, ws.seeds)
        duration = audio_seed.frames / audio_seed.sample_rate
    elif target == "model":
        command = rng.choice(MODEL_COMMANDS)
        model, result.what = broken_model(ws.model, case, rng)
        if command == "decode":
            source = inputs / "x.latent.safetensors"
            shutil.copy(ws.latents, source)
        else:
            audio_seed = write_seed(inputs, random.Random(index), [])
            source, duration = audio_seed.path, audio_seed.frames / audio_seed.sample_rate
    else:
        command = "decode"
        source = inputs / "x.latent.safetensors"
        result.what = broken_latents(ws.latents, source, rng, ws.foreign)
    result.command = command
    ext = {"encode": ".latent.safetensors"}.get(command, rng.choice([".wav", ".wav", ".flac"]))
    args = [command] if command == "generate" else [command, str(source)]
    if command == "generate":
        args += ["fuzz", "-d", "0.4", "--steps", "1"]
    elif command == "inpaint":
        args += ["--steps", "1"]
        for _ in range(rng.choice([1, 1, 2])):
            args += ["--mask", _span(rng, duration)]
    elif command == "continue":
        args += ["--seconds", str(rng.choice([0.05, 0.3, 0.8])), "--steps", "1"]
    elif command == "remix":
        args += ["--strength", str(rng.choice([0.0, 0.4, 1.0])), "--steps", "2"]
        if rng.random() < 0.3:
            args += ["--mask", _span(rng, duration)]
    default_name = command != "generate" and rng.random() < 0.2 and source.name[:1] != "-"
    if default_name:  # the output goes beside the input, named after it
        output = source.with_name(_default_name(command, source.name))
    else:
        output = outputs / f"out{ext}"
        args += ["-o", str(output)]
    args += ["--model", str(model), "--device", "cpu", "--quiet"]
    if command not in ("encode", "decode"):
        args += ["--seed", str(index)]
    return result, args, {"output": output, "source": source, "generate_s": 0.4}


def _default_name(command: str, name: str) -> str:
    """The output name each command picks beside its input when there is no ``-o``."""
    stem = Path(name).stem
    if command == "encode":
        return f"{stem}.latent.safetensors"
    if command == "decode":
        return name.removesuffix(".safetensors").removesuffix(".latent") + ".wav"
    return f"{stem}.{ {'continue': 'continued', 'remix': 'remixed'}.get(command, 'inpainted') }.wav"


# Rates whose resampling to 48 kHz is exact; others may be read as a rate next to them (audio.py).
EXACT_RATES = {8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000}
EXACT_RATES |= {176_400, 192_000, 352_800, 384_000, 768_000, 1_000, 3_000, 100, 1, 2}


def _expected_frames(command: str, args: list[str], source: Path) -> tuple[int, float] | None:
    """(frames, tolerance) of a valid output of ``command``, from a look of our own at its input."""
    import soundfile as sf

    if command == "generate":
        return round(0.4 * SR), 0.0
    if command == "decode":
        from safetensors import safe_open

        with safe_open(str(source), framework="pt") as f:
            return int((f.metadata() or {})["length"]), 0.0
    info = sf.info(str(source))
    held = len(sf.read(str(source), dtype="float32", always_2d=True)[0])  # header counts may lie
    frames = held if info.samplerate == SR else math.ceil(held * SR / info.samplerate)
    tolerance = 0.0 if info.samplerate in EXACT_RATES else 2e-3
    if command == "continue":
        frames += round(float(args[args.index("--seconds") + 1]) * SR)
    return frames, tolerance


def _check_output(result: Result, args: list[str], expect: dict) -> list[str]:
    """Problems with the output of a case that exited 0 (empty: it is a valid file)."""
    import numpy as np
    import soundfile as sf

    output: Path = expect["output"]
    if not output.is_file():
        return [f"invalid output: exit 0 but no {output.name}"]
    try:
        frames, tolerance = _expected_frames(result.command, args, expect["source"])
    except Exception as err:  # noqa: BLE001 - the input was accepted, so it must be readable
        return [f"invalid output: jen1 accepted an input the checker cannot read ({err})"]
    if result.command == "encode":
        from jen1cli.commands.codec import read_latents

        try:
            latents, meta = read_latents(output)
        except Exception as err:  # noqa: BLE001
            return [f"invalid output: the latent file does not read back ({err})"]
        got = int(meta["length"])
        if not bool(latents.isfinite().all()):
            return ["invalid output: non-finite latents"]
    else:
        info = sf.info(str(output))
        if info.samplerate != SR or info.channels != 2:
            return [f"invalid output: {info.samplerate} Hz, {info.channels} channels"]
        data, _ = sf.read(str(output), dtype="float32")
        if not np.isfinite(data).all():
            return ["invalid output: non-finite samples"]
        got = info.frames
        if result.command != "decode":
            sidecar = output.with_name(output.name + ".json")
            try:
                json.loads(sidecar.read_text())
            except (OSError, ValueError):
                return ["invalid output: no readable sidecar"]
    if abs(got - frames) > tolerance * frames:
        return [f"invalid output: {got} frames, expected {frames}"]
    return []


def run_case(ws: Workspace, index: int, seed: int, timeout: float, keep: Path | None = None):
    """Build, run and check one case; its files are removed unless ``keep`` is given."""
    import warnings

    case = keep or ws.root / f"case-{index}"
    shutil.rmtree(case, ignore_errors=True)
    result = Result(index)
    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        with quiet_c_stderr():  # libmpg123's notes on the mutated files are not jen1's output
            result, args, expect = _build(ws, index, seed, case)
        result.args = args
        before = _listing(case)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with warnings.catch_warnings(), _c_stderr() as c_stderr:
                warnings.simplefilter("default")  # a fresh process would show each warning
                for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
                    warnings.simplefilter("ignore", quiet)
                outcome = ws.runner.invoke(ws.app, args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result.seconds = time.monotonic() - start
        result.exit_code = outcome.exit_code
        stderr = outcome.stderr + "".join(f"[C] {line}\n" for line in c_stderr if line.strip())
        result.stderr = stderr[-2000:]
        new = _listing(case) - before
        with quiet_c_stderr():
            result.problems = _judge(result, outcome, stderr, args, expect, new, case)
    except CaseTimeout:
        result.seconds = time.monotonic() - start
        result.problems = [f"hang: no answer in {timeout:g} s"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if keep is None:
            shutil.rmtree(case, ignore_errors=True)
    return result


@contextmanager
def _c_stderr():
    """Collect what C libraries write straight to file descriptor 2 (the CliRunner sees only
    Python's sys.stderr): the lines a user would see in the terminal too."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode(errors="replace").splitlines()


def _alarm(signum, frame):
    raise CaseTimeout


def _judge(result: Result, outcome, stderr: str, args, expect, new: set[str], case) -> list[str]:
    import traceback

    problems = []
    text = outcome.stdout + stderr
    if (outcome.exception is not None and not isinstance(outcome.exception, SystemExit)) or (
        "Traceback" in text
    ):
        exc = outcome.exception
        where = "".join(traceback.format_exception(exc)[-3:]) if exc else ""
        problems.append(f"traceback: {type(exc).__name__}: {exc} {where}".strip())
    lines = [line for line in stderr.splitlines() if line.strip()]
    output: Path = expect["output"]
    wanted = set()
    if result.exit_code == 0:
        wanted = {str(output.relative_to(case))}
        if result.command not in ("encode", "decode"):
            wanted.add(wanted.copy().pop() + ".json")
        problems += _check_output(result, args, expect)
        stray = [line for line in lines if not line.startswith("jen1: note:")]
        if stray:
            problems.append(f"stray stderr: {stray[0][:200]}")
        if outcome.stdout.strip().splitlines()[-1:] != [str(output)]:
            problems.append(f"invalid output: stdout is {outcome.stdout[-200:]!r}")
    elif result.exit_code == 2:
        if len(lines) != 1 or not lines[0].startswith("jen1: error:"):
            problems.append(f"bad error line: {len(lines)} lines: {' | '.join(lines)[:300]}")
    elif result.exit_code == 1 and "internal error" in stderr:
        problems.append(f"internal error: {' | '.join(lines)[:300]}")
    elif not problems:
        problems.append(f"other exit code: {result.exit_code}: {' | '.join(lines)[:300]}")
    if result.what.startswith("intact") and result.exit_code != 0 and not problems:
        problems.append(f"intact input refused: {' | '.join(lines)[:300]}")
    if new - wanted:
        problems.append(f"partial file: {', '.join(sorted(new - wanted))}")
    return problems


def _memory_ceiling(extra_gb: float) -> None:
    """Cap the worker's address space a few GB above what it holds after its imports."""
    import resource

    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = size + int(extra_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(conn, root: str, seeds: list[str], seed: int, timeout: float, memory_gb: float):
    """A worker process: build the workspace once, then answer case indices until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    ws = Workspace(Path(root), [Path(s) for s in seeds])
    os.chdir(root)
    if memory_gb > 0:
        _memory_ceiling(memory_gb)
    conn.send(("ready", None))
    while True:
        message = conn.recv()
        if message is None:
            return
        conn.send(("done", asdict(run_case(ws, message, seed, timeout))))


# --- the parent: hand out cases, replace workers that stop answering, summarise ------------------
class Pool:
    """Long-lived workers fed one case index at a time."""

    def __init__(self, workers: int, root: Path, seeds: list[str], options) -> None:
        self.context = mp.get_context("spawn")
        self.root, self.seeds, self.options = root, seeds, options
        self.workers = [self._start(i) for i in range(workers)]

    def _start(self, number: int) -> dict:
        parent, child = self.context.Pipe()
        folder = self.root / f"worker-{number}-{time.monotonic_ns()}"
        folder.mkdir(parents=True)
        o = self.options
        args = (child, str(folder), self.seeds, o.seed, o.timeout, o.memory_gb)
        process = self.context.Process(target=worker_main, args=args, daemon=True)
        process.start()
        child.close()
        if not parent.poll(300) or parent.recv()[0] != "ready":
            raise RuntimeError("a fuzz worker did not start")
        return {"process": process, "conn": parent, "case": None, "since": 0.0, "dir": folder}

    def run(self, indices: list[int], report) -> None:
        from multiprocessing.connection import wait

        todo = list(reversed(indices))
        hard = self.options.timeout + 60
        while todo or any(w["case"] is not None for w in self.workers):
            for w in self.workers:
                if w["case"] is None and todo:
                    w["case"], w["since"] = todo.pop(), time.monotonic()
                    w["conn"].send(w["case"])
            busy = [w["conn"] for w in self.workers if w["case"] is not None]
            ready = wait(busy, timeout=1.0)
            for i, w in enumerate(self.workers):
                if w["conn"] in ready:
                    try:
                        _, data = w["conn"].recv()
                    except EOFError:  # the worker died (killed for memory, a crash in C code)
                        data = asdict(Result(w["case"], problems=["hang: the worker died"]))
                        self.workers[i] = self._replace(w)
                        report(Result(**data))
                        continue
                    w["case"] = None
                    report(Result(**data))
                elif w["case"] is not None and time.monotonic() - w["since"] > hard:
                    report(Result(w["case"], problems=[f"hang: no answer in {hard:g} s"]))
                    self.workers[i] = self._replace(w)

    def _replace(self, w: dict) -> dict:
        w["process"].kill()
        w["process"].join()
        shutil.rmtree(w["dir"], ignore_errors=True)
        return self._start(len(self.workers) + int(time.monotonic()))

    def close(self) -> None:
        for w in self.workers:
            w["conn"].send(None)
            w["process"].join(30)


def run_fuzz(
    cases: int,
    seed: int = 0,
    workers: int = 2,
    timeout: float = 30.0,
    seeds: list[str] | None = None,
    memory_gb: float = 3.0,
    first: int = 0,
    progress=None,
) -> list[Result]:
    """Run cases ``first .. first + cases - 1``; ``workers`` 0 runs them in this process."""
    options = argparse.Namespace(seed=seed, timeout=timeout, memory_gb=memory_gb)
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        if progress:
            progress(result, len(results), cases)

    indices = list(range(first, first + cases))
    with tempfile.TemporaryDirectory(prefix="jen1-fuzz-") as tmp:
        if workers == 0:
            ws = Workspace(Path(tmp), [Path(s) for s in seeds or []])
            for index in indices:
                report(run_case(ws, index, seed, timeout))
        else:
            pool = Pool(workers, Path(tmp), list(seeds or []), options)
            try:
                pool.run(indices, report)
            finally:
                pool.close()
    return sorted(results, key=lambda r: r.index)


def summary(results: list[Result], seconds: float, workers: int, seed: int) -> str:
    """The printed report: cases, exit codes, each kind of failure, and the failures themselves."""
    failed = [r for r in results if r.problems]
    kinds = Counter(p.split(":")[0] for r in failed for p in r.problems)
    codes = Counter("hang" if r.exit_code is None else str(r.exit_code) for r in results)
    rate = len(results) / max(seconds, 1e-9)
    lines = [
        f"jen1 fuzz: {len(results)} cases, seed {seed}, {workers} worker(s), "
        f"{seconds:.0f} s ({rate:.1f} cases/s)",
        "  targets:    " + _counts(Counter(r.target for r in results)),
        "  commands:   " + _counts(Counter(r.command for r in results)),
        "  exit codes: " + _counts(codes),
    ]
    lines += [f"  {kind + ':':<22}{kinds.get(kind, 0)}" for kind in PROBLEMS]
    slowest = max(results, key=lambda r: r.seconds, default=None)
    if slowest:
        lines.append(f"  slowest case: {slowest.seconds:.1f} s (#{slowest.index}, {slowest.what})")
    lines.append(f"  failed cases: {len(failed)}")
    for r in failed[:40]:
        lines.append(f"    #{r.index} {r.target}/{r.command} [{r.what}]: {r.problems[0][:400]}")
    if failed:
        lines.append(f"  rerun one: python {Path(__file__).name} --case N --seed {seed} --keep DIR")
    return "\n".join(lines)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="0: run in this process")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--memory-gb", type=float, default=3.0, help="per worker, above imports")
    parser.add_argument("--seeds", nargs="*", default=[], help="real audio files to mutate too")
    parser.add_argument("--case", type=int, help="run only this case (with --keep: keep files)")
    parser.add_argument("--keep", type=Path, help="folder for --case's files")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    args = parser.parse_args(argv)
    if args.case is not None:
        with tempfile.TemporaryDirectory(prefix="jen1-fuzz-") as tmp:
            ws = Workspace(Path(tmp), [Path(s) for s in args.seeds])
            result = run_case(ws, args.case, args.seed, args.timeout, keep=args.keep)
        print(json.dumps(asdict(result), indent=2))
        return 1 if result.problems else 0
    start = time.monotonic()

    def progress(result: Result, done: int, total: int) -> None:
        if result.problems:
            print(f"#{result.index} {result.command}: {result.problems[0][:300]}", file=sys.stderr)
        if done % 500 == 0:
            print(f"{done}/{total} cases, {time.monotonic() - start:.0f} s", file=sys.stderr)

    results = run_fuzz(
        args.cases,
        args.seed,
        args.workers,
        args.timeout,
        args.seeds,
        args.memory_gb,
        args.first,
        progress,
    )
    print(summary(results, time.monotonic() - start, args.workers, args.seed))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
