"""tools/fuzz: a few hundred fuzz cases in CI (mutated audio, broken model folders and latent
files), each ending in exit 0 with a valid output or exit 2 with one error line; and the harness
itself notices a traceback and a partial file when a bug is planted."""

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "fuzz"))

import audio_cases  # noqa: E402
import fuzz_inputs  # noqa: E402

CASES = 250


@pytest.mark.slow
def test_a_few_hundred_fuzz_cases_keep_the_contract():
    results = fuzz_inputs.run_fuzz(CASES, seed=18, workers=0, timeout=60)
    print(fuzz_inputs.summary(results, 0.0, 0, 18))
    failed = [f"#{r.index} {r.command} [{r.what}]: {r.problems}" for r in results if r.problems]
    assert not failed, "\n".join(failed[:20])
    assert len(results) == CASES
    # The cases reach every command and target, and both endings occur often.
    assert {r.command for r in results} == {
        "encode",
        "decode",
        "inpaint",
        "continue",
        "remix",
        "generate",
    }
    assert {r.target for r in results} == {"audio", "model", "latent"}
    codes = Counter(r.exit_code for r in results)
    assert set(codes) == {0, 2} and min(codes.values()) > CASES // 10
    families = {r.what.split(":")[0] for r in results if r.target == "audio"}
    assert families == set(audio_cases.MUTATIONS)


@pytest.mark.slow
def test_the_harness_reports_a_planted_internal_error_and_partial_file(monkeypatch, tmp_path):
    import jen1cli.audio

    workspace = fuzz_inputs.Workspace(tmp_path, [])  # a good model and latent file first

    def broken_load(path, *args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(jen1cli.audio, "load_audio", broken_load)

    def partial_write(path, write_fn, overwrite=False):
        Path(path).write_bytes(b"half")
        raise jen1cli.audio.AudioError("planted: the write failed after the file appeared")

    monkeypatch.setattr(jen1cli.audio, "atomic_write", partial_write)
    results = [fuzz_inputs.run_case(workspace, i, 18, 60) for i in range(40)]
    kinds = Counter(p.split(":")[0] for r in results for p in r.problems)
    assert kinds["internal error"] > 0  # inpaint, continue, remix, encode load the audio
    assert kinds["partial file"] > 0  # decode writes through save_audio -> atomic_write


@pytest.mark.slow
def test_the_harness_reports_a_planted_hang(monkeypatch, tmp_path):
    import time

    from jen1cli.pipeline import Jen1Pipeline

    workspace = fuzz_inputs.Workspace(tmp_path, [])

    def stuck(*args, **kwargs):
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(Jen1Pipeline, "from_pretrained", stuck)  # every command loads a model
    results = [fuzz_inputs.run_case(workspace, i, 18, timeout=1.0) for i in range(8)]
    hangs = [r for r in results if any(p.startswith("hang") for p in r.problems)]
    assert hangs and all(r.seconds < 5 for r in hangs)
