"""Progress for the CLI's long work (loading, converting): a bar redrawn in place on a terminal, plain
timestamped lines anywhere else (logs, pipes, CI)."""

from __future__ import annotations

import time
from typing import TextIO

_BAR_WIDTH = 30
# Off a terminal, a line for each new phase and each further tenth of the work.
_PLAIN_STEP_PERCENT = 10


def progress_bar(percent: float, label: str) -> str:
    filled = round(_BAR_WIDTH * min(max(percent, 0.0), 100.0) / 100)
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {percent:5.1f}% {label:<18}"


def progress_text(percent: float, label: str, when: float) -> str:
    """One plain progress line: local time, percent, phase."""
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} {percent:5.1f}% {label}"


class ProgressLine:
    """On a terminal, redraws one line in place; elsewhere writes a line per phase and per 10%, so a log
    holds a few readable lines instead of every redraw. finish() ends it."""

    def __init__(self, out: TextIO, interactive: bool | None = None) -> None:
        self._out = out
        self._interactive = out.isatty() if interactive is None else interactive
        self._drawn = False
        self._last_plain: tuple[str, int] | None = None

    def update(self, percent: float, label: str) -> None:
        if self._interactive:
            self._out.write(f"\r{progress_bar(percent, label)}")
            self._drawn = True
        else:
            step = int(min(max(percent, 0.0), 100.0) // _PLAIN_STEP_PERCENT)
            if self._last_plain == (label, step):
                return
            self._last_plain = (label, step)
            self._out.write(progress_text(percent, label, time.time()) + "\n")
        self._out.flush()

    def finish(self, label: str) -> None:
        self.update(100.0, label)
        self.interrupt()

    def interrupt(self) -> None:
        """Ends a line drawn in place, so what is printed next starts on a line of its own."""
        if self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False
