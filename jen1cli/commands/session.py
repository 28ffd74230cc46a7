"""What wraps every command run: SIGTERM becomes an exception, and notes wait for success.

A command's temp files are removed by ``finally`` blocks (audio.atomic_write), which run only when
a signal arrives as an exception: SIGINT already is one (KeyboardInterrupt); SIGTERM, whose default
action ends the process on the spot, is made into :class:`Terminated` here. Notes (what loading
changed, merged spans) and Python warnings are held back and printed once the command has
succeeded, so a failed command prints exactly one line: its error.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import typer

_NOTES: list[str] = []


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, so that no ``except Exception`` swallows it)."""


def note(text: str) -> None:
    """Say something the user should know about a successful run (printed when it ends)."""
    _NOTES.append(" ".join(text.split()))


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def notes_on_success() -> Iterator[None]:
    """Collect notes and warnings; print them as ``jen1: note:`` lines if the block succeeds."""
    _NOTES.clear()
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except SystemExit as stop:
            if stop.code in (0, None):
                _flush(caught)
            _NOTES.clear()
            raise
        except BaseException:
            _NOTES.clear()
            raise
    _flush(caught)


def _flush(caught: list[warnings.WarningMessage]) -> None:
    lines = [*_NOTES, *(" ".join(str(w.message).split()) for w in caught)]
    _NOTES.clear()
    for line in dict.fromkeys(lines):  # each once, in order
        typer.echo(f"jen1: note: {line}", err=True)
