"""The core's step in flight, written where `inferno serve` reads it when the core dies by a signal: a crash
in native code then names the request shape that caused it, and the supervisor does not restart into the
same crash (supervisor.py CrashLoopGuard)."""

from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

# The core child writes the shape of the step it runs to this file, and clears it after the step.
INFLIGHT_FILE_ENV = "INFERNO_INFLIGHT_FILE"


@dataclass(frozen=True)
class RequestShape:
    """One engine step of the core, as its supervisor learns it when the core dies in it."""

    model: str
    # Per sequence in flight: (prompt tokens, max_tokens).
    sequences: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        prompts = "/".join(str(prompt) for prompt, _ in self.sequences)
        max_tokens = "/".join(str(limit) for _, limit in self.sequences)
        count = len(self.sequences)
        return (
            f"model {self.model}, {count} sequence{'s' if count != 1 else ''} in flight "
            f"(prompt tokens {prompts}, max_tokens {max_tokens})"
        )


class InflightRecord:
    """The core's side: the shape of the step it is about to run, cleared when the step returns. A process
    that dies by a signal leaves its last write in the page cache, where the supervisor reads it."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        # Each loaded model's engine thread writes here.
        self._lock = threading.Lock()

    def begin(self, shape: RequestShape) -> None:
        data = json.dumps(asdict(shape)).encode()
        with self._lock:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def end(self) -> None:
        with self._lock:
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)


def read_inflight(path: Path) -> RequestShape | None:
    """The step the core was running when it died; None when it was between steps."""
    try:
        data = json.loads(path.read_bytes() or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        sequences = tuple((int(prompt), int(limit)) for prompt, limit in data["sequences"])
        return RequestShape(str(data["model"]), sequences)
    except (KeyError, TypeError, ValueError):
        return None


@functools.cache
def process_record() -> InflightRecord | None:
    """This process's record, when a supervisor asked for one (INFERNO_INFLIGHT_FILE)."""
    path = os.environ.get(INFLIGHT_FILE_ENV)
    return InflightRecord(Path(path)) if path else None
