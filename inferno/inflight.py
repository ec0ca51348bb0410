"""The core's step in flight, written where `inferno serve` reads it when the core dies by a signal: a crash
in native code then names the request shape that caused it, and the supervisor does not restart into the
same crash (supervisor.py CrashLoopGuard)."""

from __future__ import annotations

import functools
import json
import mmap
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

# The core child writes the shape of the step it runs to this file, and clears it after the step.
INFLIGHT_FILE_ENV = "INFERNO_INFLIGHT_FILE"
# The record's size: a step of some thousands of sequences.
_RECORD_BYTES = 64 * 1024


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
    """The core's side: the shape of the step it is about to run, cleared when the step returns. The file is
    mapped shared, so a write is a copy into the page cache, with no system call on the engine's path
    between two decodes; a process that dies by a signal leaves its last write there, where the supervisor
    reads it. The JSON ends at the first NUL byte; a NUL first means no step is running."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, _RECORD_BYTES)
            self._map = mmap.mmap(fd, _RECORD_BYTES)
        finally:
            os.close(fd)
        self._map[0:1] = b"\0"
        # Each loaded model's engine thread writes here.
        self._lock = threading.Lock()
        self._last: tuple[RequestShape, bytes] | None = None

    def begin(self, shape: RequestShape) -> None:
        # Read once: another model's engine thread may replace the cached encoding meanwhile.
        last = self._last
        if last is None or last[0] != shape:
            # A shape too long for the record is left out: read back, it is no step at all.
            last = self._last = (shape, json.dumps(asdict(shape)).encode()[: _RECORD_BYTES - 1] + b"\0")
        data = last[1]
        with self._lock:
            self._map[0 : len(data)] = data

    def end(self) -> None:
        with self._lock:
            self._map[0:1] = b"\0"

    def close(self) -> None:
        self._map.close()


def read_inflight(path: Path) -> RequestShape | None:
    """The step the core was running when it died; None when it was between steps."""
    try:
        data = json.loads(path.read_bytes().split(b"\0", 1)[0] or b"null")
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
