"""Training data: metadata, skipped files, reproducible crops, partial reads, resumable order."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from jen1cli.training.data import (
    AudioTextDataset,
    DatasetError,
    LatentCacheDataset,
    ResumableSampler,
    read_metadata,
    save_latent_item,
)

SR = 8000  # a low rate keeps the files tiny; the dataset is asked for the same rate (no resampling)


def _tone(seconds: float, sr: int = SR, channels: int = 2, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    # A rising ramp on top of the tone makes every position of the file distinguishable.
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.5 * t / max(seconds, 1e-9)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def _write_jsonl(folder, rows):
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _folder(tmp_path, durations=(3.0, 4.0)):
    """A folder of stereo WAVs with a metadata.jsonl (an extra 'genre' column included)."""
    rows = []
    for i, seconds in enumerate(durations):
        sf.write(tmp_path / f"song{i}.wav", _tone(seconds, freq=200.0 + 50 * i), SR)
        rows.append({"file_name": f"song{i}.wav", "text": f"song number {i}", "genre": "test"})
    _write_jsonl(tmp_path, rows)
    return tmp_path


def test_jsonl_metadata_keeps_extra_columns(tmp_path):
    ds = AudioTextDataset(_folder(tmp_path), seconds=1.0, sample_rate=SR)
    assert len(ds) == 2
    assert [e.text for e in ds.entries] == ["song number 0", "song number 1"]
    assert ds.entries[0].metadata == {"genre": "test"}
    assert ds.entries[1].duration_s == pytest.approx(4.0)
    assert not ds.skipped


def test_csv_metadata(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(2.0), SR)
    sf.write(tmp_path / "b.flac", _tone(2.0, channels=1), SR)
    (tmp_path / "metadata.csv").write_text(
        'file_name,text,bpm\na.wav,"calm piano, soft",90\nb.flac,drums,120\n'
    )
    ds = AudioTextDataset(tmp_path, seconds=1.0, sample_rate=SR)
    assert [e.text for e in ds.entries] == ["calm piano, soft", "drums"]
    assert ds.entries[1].metadata == {"bpm": "120"}
    item = ds[1]
    assert item["audio"].shape == (2, SR)  # mono file comes back as stereo
    assert torch.equal(item["audio"][0], item["audio"][1])


def test_csv_without_text_column_is_rejected(tmp_path):
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.wav,x\n")
    with pytest.raises(DatasetError, match="text"):
        read_metadata(tmp_path)


def test_bad_jsonl_line_names_the_line(tmp_path):
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.wav", "text": "x"}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2"):
        read_metadata(tmp_path)


def test_skipped_files_are_counted_by_reason(tmp_path):
    sf.write(tmp_path / "good.wav", _tone(2.0), SR)
    sf.write(tmp_path / "short.wav", _tone(0.5), SR)
    sf.write(tmp_path / "padded.wav", _tone(1.5), SR)  # shorter than the crop but >= min_seconds
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file" * 10)
    _write_jsonl(
        tmp_path,
        [
            {"file_name": "good.wav", "text": "good"},
            {"file_name": "short.wav", "text": "too short"},
            {"file_name": "padded.wav", "text": "padded"},
            {"file_name": "corrupt.wav", "text": "corrupt"},
            {"file_name": "gone.wav", "text": "missing"},
            {"file_name": "good.wav"},
        ],
    )
    ds = AudioTextDataset(tmp_path, seconds=2.0, sample_rate=SR, min_seconds=1.0)
    assert [e.text for e in ds.entries] == ["good", "padded"]
    assert ds.skipped == {"too short": 1, "unreadable": 1, "missing file": 1, "no text": 1}
    assert "1 missing file" in ds.skipped_summary()
    item = ds[1]
    assert item["audio"].shape == (2, 2 * SR)
    assert item["length"] == round(1.5 * SR)
    assert torch.count_nonzero(item["audio"][:, item["length"] :]) == 0  # zero-padded tail
    assert torch.count_nonzero(item["audio"][:, : item["length"]]) > 0


def test_no_usable_file_raises_clear_error(tmp_path):
    sf.write(tmp_path / "short.wav", _tone(0.2), SR)
    _write_jsonl(tmp_path, [{"file_name": "short.wav", "text": "x"}])
    with pytest.raises(DatasetError, match="metadata.jsonl") as err:
        AudioTextDataset(tmp_path, seconds=1.0, sample_rate=SR)
    assert "1 too short" in str(err.value)
    with pytest.raises(DatasetError, match="file_name"):
        AudioTextDataset(tmp_path / "nothing-here", seconds=1.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no metadata.jsonl or metadata.csv"):
        AudioTextDataset(empty, seconds=1.0)


def test_crops_reproducible_per_seed_epoch_index(tmp_path):
    folder = _folder(tmp_path, durations=(6.0,))
    ds = AudioTextDataset(folder, seconds=1.0, sample_rate=SR, seed=3)
    first = ds[0]
    assert first["audio"].shape == (2, SR) and first["audio"].dtype == torch.float32
    assert first["text"] == "song number 0" and first["index"] == 0 and first["length"] == SR
    again = AudioTextDataset(folder, seconds=1.0, sample_rate=SR, seed=3)
    assert torch.equal(again[0]["audio"], first["audio"])  # a fresh process sees the same crop
    assert torch.equal(ds[(0, 0)]["audio"], first["audio"])  # (epoch, index) key == set_epoch
    epochs = [ds[(epoch, 0)]["audio"] for epoch in range(4)]
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])  # crops move between epochs
    ds.set_epoch(2)
    assert torch.equal(ds[0]["audio"], epochs[2])
    other_seed = AudioTextDataset(folder, seconds=1.0, sample_rate=SR, seed=4)
    assert not torch.equal(other_seed[0]["audio"], first["audio"])


def test_crop_matches_the_file_at_its_offset(tmp_path):
    folder = _folder(tmp_path, durations=(5.0,))
    ds = AudioTextDataset(folder, seconds=0.5, sample_rate=SR, seed=1)
    full = torch.from_numpy(sf.read(folder / "song0.wav", dtype="float32")[0].T)
    crop = ds[(1, 0)]["audio"]
    # Exactly one offset on the file's sample grid reproduces the crop.
    n = crop.shape[1]
    starts = (full[:, : full.shape[1] - n + 1] == crop[:, :1]).all(dim=0).nonzero().flatten()
    hits = [s for s in starts.tolist() if torch.equal(full[:, s : s + n], crop)]
    assert len(hits) == 1


def test_long_file_is_read_partially(tmp_path, monkeypatch):
    folder = _folder(tmp_path, durations=(60.0,))
    ds = AudioTextDataset(folder, seconds=1.0, sample_rate=SR)
    frames_read = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        out = original(self, frames, *args, **kwargs)
        frames_read.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    for epoch in range(3):
        assert ds[(epoch, 0)]["audio"].shape == (2, SR)
    assert frames_read and max(frames_read) <= SR  # 1 s of 60 s, never the whole file


def test_resampled_file_has_exact_length(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(2.0, sr=11025), 11025)
    _write_jsonl(tmp_path, [{"file_name": "a.wav", "text": "x"}])
    ds = AudioTextDataset(tmp_path, seconds=0.7, sample_rate=SR)
    item = ds[0]
    assert item["audio"].shape == (2, round(0.7 * SR)) and item["length"] == round(0.7 * SR)


def test_file_unreadable_mid_run_is_replaced_and_counted(tmp_path):
    folder = _folder(tmp_path, durations=(2.0, 2.0, 2.0))
    ds = AudioTextDataset(folder, seconds=1.0, sample_rate=SR)
    (folder / "song1.wav").write_bytes(b"garbage")  # truncated after the scan
    item = ds[1]
    # The next file replaces it, deterministically.
    assert item["index"] == 2 and item["text"] == "song number 2"
    assert ds.skipped["unreadable during training"] == 1
    assert ds[1]["index"] == 2  # known-bad files are not retried (and not counted twice)
    assert ds.skipped["unreadable during training"] == 1
    (folder / "song0.wav").unlink()
    (folder / "song2.wav").unlink()
    with pytest.raises(DatasetError, match="unreadable"):
        ds[0]


def test_sampler_permutation_deterministic_and_resumable():
    sampler = ResumableSampler(10, seed=5)
    epoch0 = list(sampler)
    assert sorted(i for _, i in epoch0) == list(range(10)) and {e for e, _ in epoch0} == {0}
    assert list(ResumableSampler(10, seed=5)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert [i for _, i in epoch1] != [i for _, i in epoch0] and epoch1[0][0] == 1

    # Train 4 samples into epoch 1, save, and resume in a "new process".
    sampler.advance(4)
    state = sampler.state_dict()
    resumed = ResumableSampler(10, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # accelerate calls set_epoch with the same epoch: must keep the position
    assert len(resumed) == 6
    assert list(resumed) == epoch1[4:]
    resumed.set_epoch(2)
    assert len(resumed) == 10 and list(resumed)[0][0] == 2

    with pytest.raises(ValueError, match="dataset changed"):
        ResumableSampler(11, seed=5).load_state_dict(state)


def test_resumed_dataloader_sees_the_same_batches(tmp_path):
    folder = _folder(tmp_path, durations=(2.0, 2.5, 3.0, 3.5))
    ds = AudioTextDataset(folder, seconds=0.25, sample_rate=SR, seed=7)

    def run(sampler, steps):
        batches = []
        for batch in DataLoader(ds, batch_size=2, sampler=sampler):
            batches.append(batch)
            sampler.advance(2)
            if len(batches) == steps:
                break
        return batches

    sampler = ResumableSampler(len(ds), seed=7)
    sampler.set_epoch(3)
    full = run(sampler, steps=2)
    interrupted = ResumableSampler(len(ds), seed=7)
    interrupted.set_epoch(3)
    run(interrupted, steps=1)
    resumed = ResumableSampler(len(ds), seed=7)
    resumed.load_state_dict(interrupted.state_dict())
    (second,) = run(resumed, steps=1)
    assert torch.equal(second["index"], full[1]["index"])
    assert torch.equal(second["audio"], full[1]["audio"])
    assert second["text"] == full[1]["text"]


def test_latent_cache_crops_and_skips(tmp_path):
    torch.manual_seed(0)
    long = torch.randn(4, 50)
    save_latent_item(tmp_path / "long.safetensors", long, "long one", {"source": "a.wav"})
    save_latent_item(tmp_path / "short.safetensors", torch.randn(4, 5), "short one")
    save_latent_item(tmp_path / "other_dim.safetensors", torch.randn(3, 50), "wrong dim")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    ds = LatentCacheDataset(tmp_path, frames=8, seed=1)
    assert [e.text for e in ds.entries] == ["long one"]
    assert ds.entries[0].metadata == {"source": "a.wav"}
    assert ds.skipped == {"too short": 1, "unreadable": 1, "wrong latent shape": 1}
    item = ds[(0, 0)]
    assert item["latents"].shape == (4, 8) and item["length"] == 8 and item["text"] == "long one"
    start = (long.unfold(1, 8, 1) == item["latents"][:, None]).all(2).all(0).nonzero()
    assert start.numel() == 1  # a real window of the stored latents
    assert torch.equal(ds[(0, 0)]["latents"], item["latents"])
    assert any(not torch.equal(ds[(e, 0)]["latents"], item["latents"]) for e in range(1, 5))

    padded = LatentCacheDataset(tmp_path, frames=8, min_frames=4)
    assert len(padded) == 2
    short = padded[1]
    assert short["length"] == 5 and torch.count_nonzero(short["latents"][:, 5:]) == 0

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="latents"):
        LatentCacheDataset(empty, frames=8)


def test_sampler_global_order_is_split_by_accelerate_shards():
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    sampler = ResumableSampler(12, seed=2)
    sampler.advance(4)  # resume two global batches (2 processes x batch 2) into epoch 0
    resumed = ResumableSampler(12, seed=2)
    resumed.load_state_dict(sampler.state_dict())
    shards = [
        list(BatchSamplerShard(BatchSampler(resumed, 2, drop_last=False), 2, rank))
        for rank in range(2)
    ]
    # Process 0 takes global batches 0, 2, ...; process 1 takes 1, 3, ... of the remaining order.
    interleaved = [key for pair in zip(*shards, strict=True) for batch in pair for key in batch]
    assert interleaved == list(ResumableSampler(12, seed=2))[4:]
