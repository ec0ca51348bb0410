"""Which cores sharing a database are alive. Each writes when it was last seen (the runners table, keyed by
the name it runs stored responses and conversion jobs under); the work a core left unfinished is failed by
the others once it has been silent for ABANDONED_AFTER_S. A core that restarts under its own name fails its
own at start; one that never does (a pod replaced under a new name) would otherwise leave it running forever.
"""

from __future__ import annotations

import time

from inferno.core.database.base import Database

HEARTBEAT_S = 10.0
ABANDONED_AFTER_S = 60.0
# `runner IN (SILENT_RUNNERS)`, with beat's cutoff as the parameter: runners that never beat (an older
# release) are not in it.
SILENT_RUNNERS = "SELECT runner FROM runners WHERE seen < ?"


def beat(database: Database, runner: str, now: float | None = None) -> float:
    """Records that runner is alive now; the cutoff before which a runner's last beat means it is gone."""
    now = time.time() if now is None else now
    database.execute(
        "INSERT INTO runners (runner, seen) VALUES (?, ?) ON CONFLICT (runner) DO UPDATE SET seen = ?",
        (runner, now, now),
    )
    return now - ABANDONED_AFTER_S
