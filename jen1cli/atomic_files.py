"""Outputs appear whole or not at all: written to a temp file beside the target, synced, renamed.

A failed or interrupted run (an error, a full disk, Ctrl-C, SIGTERM) removes its temp file and
leaves an existing output as it was; two runs writing one path each publish a complete file, the
last rename winning (or, without overwrite, the second refused). ``publish_together`` extends this
to several files, such as an audio file and its sidecar.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from jen1cli.audio_guard import AudioError

# Inside publish_together: the (temp file, target, overwrite) triples waiting to be renamed.
_STAGED: ContextVar[list[tuple[Path, Path, bool]] | None] = ContextVar("staged", default=None)


def _default_mode() -> int:
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it and restore it
    os.umask(mask)
    return 0o666 & ~mask


def _exists(p: Path) -> AudioError:
    return AudioError(f"{p} already exists — pick another name or allow overwriting (--overwrite)")


def _refuse_folder(p: Path) -> None:
    if p.is_dir():
        raise AudioError(f"{p} is a folder — give a file name inside it, e.g. {p / 'out.wav'}")


def _cannot_write(p: Path, e: OSError) -> AudioError:
    reason = e.strerror or " ".join(str(e).split()) or type(e).__name__
    return AudioError(f"cannot write {p} ({reason}) — check space and permissions")


def _sync(tmp: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible


def _move(tmp: Path, p: Path, overwrite: bool) -> None:
    """Make the finished temp file appear at `p` in one step (rename or hard link)."""
    os.chmod(tmp, p.stat().st_mode & 0o7777 if p.exists() else _default_mode())
    if overwrite:
        os.replace(tmp, p)
        return
    try:  # link() refuses an existing target atomically, closing the race after exists()
        os.link(tmp, p)
    except FileExistsError:
        raise _exists(p) from None
    except OSError:  # a filesystem without hard links
        if p.exists():
            raise _exists(p) from None
        os.replace(tmp, p)


def atomic_write(
    path: str | os.PathLike, write_fn: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Write all-or-nothing: `write_fn(tmp)` fills a temp file beside `path`, which then moves in.

    The temp name keeps the extension (`.name.XXXX.tmp.wav`) for writers that read the format from
    it. On any failure the temp file is removed and an existing `path` is left untouched; without
    `overwrite` an existing file is refused (AudioError). An OSError of `write_fn` (a full disk,
    a read-only or forbidden folder) becomes an AudioError; its other exceptions propagate.
    Inside :func:`publish_together` the file is only staged; it appears when the block ends.
    """
    p = Path(path).expanduser()
    folder = p.parent
    _refuse_folder(p)
    if p.exists() and not overwrite:
        raise _exists(p)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise AudioError(f"output folder {folder} {what} — create it (mkdir -p) or pick another")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}", dir=folder)
    except OSError as e:
        raise AudioError(
            f"cannot write to folder {folder} ({e.strerror}) — pick a folder you can write to"
        ) from e
    os.close(fd)
    tmp: Path | None = Path(name)
    staged = _STAGED.get()
    try:
        try:
            write_fn(tmp)  # other exceptions propagate as they are (after the cleanup below)
            _sync(tmp)
            if staged is None:
                _move(tmp, p, overwrite)
        except OSError as e:
            raise _cannot_write(p, e) from e
        if staged is not None:
            staged.append((tmp, p, overwrite))
            tmp = None  # publish_together renames it, or removes it
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return p


@contextmanager
def publish_together() -> Iterator[None]:
    """Files that :func:`atomic_write` writes inside the block appear together when it ends.

    Each is written and synced to its temp file first; only once the whole block has succeeded
    are they renamed into place, in order. If anything fails before that (an error, a full disk,
    an interrupt), none appears and every existing file stays as it was: an audio file and its
    sidecar never disagree because one of them could not be written.
    """
    staged: list[tuple[Path, Path, bool]] = []
    token = _STAGED.set(staged)
    try:
        yield
        _STAGED.reset(token)
        token = None
        with _folders_locked({p.parent for _, p, _ in staged}):
            for tmp, p, overwrite in staged:
                try:
                    _move(tmp, p, overwrite)
                except OSError as e:
                    raise _cannot_write(p, e) from e
    finally:
        if token is not None:
            _STAGED.reset(token)
        for tmp, _, _ in staged:
            tmp.unlink(missing_ok=True)


@contextmanager
def _folders_locked(folders: set[Path]) -> Iterator[None]:
    """Hold an exclusive lock on each folder while a set of files is renamed into it, so two runs
    publishing the same files at once never interleave (the pair of one, then all of the other's).

    flock(2) on the folder itself; where that is unavailable (no fcntl, a file system without
    locks) the renames go ahead unlocked, each still atomic on its own.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    held: list[int] = []
    try:
        for folder in sorted(folders):
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                os.close(fd)
                continue
            held.append(fd)
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing the descriptor releases its lock
