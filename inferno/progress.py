"""A one-line text progress bar for the CLI's long work (loading, converting)."""

from __future__ import annotations

from typing import TextIO

_BAR_WIDTH = 30


def progress_bar(percent: float, label: str) -> str:
    filled = round(_BAR_WIDTH * min(max(percent, 0.0), 100.0) / 100)
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {percent:5.1f}% {label:<18}"


class ProgressLine:
    """Redraws one line in place; finish() ends it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def update(self, percent: float, label: str) -> None:
        self._out.write(f"\r{progress_bar(percent, label)}")
        self._out.flush()

    def finish(self, label: str) -> None:
        self.update(100.0, label)
        self._out.write("\n")
        self._out.flush()
