"""The progress callback that lets model code report long work without importing a UI library."""

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``callback(stage, done, total)``, e.g. ``("denoise", 12, 50)``."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The default callback: report nothing."""
