"""llama.cpp's thread count, fitted to the cores other processes leave free (the `threads = 0` default).

llama.cpp's OpenMP threads spin at every barrier of a decode (some 300 per token for a small model). On a
machine where another process keeps a core busy, one of them is descheduled in each barrier and every other
thread spins until it returns: a 32-token reply took 24.8 s instead of 1.2 s with one thread fewer. So with
the automatic default the engine measures, between decodes, the CPU used by processes outside Inferno's own
(this core, its supervisor and the gateway) and runs one thread per core that is left, never fewer than one.
On an idle machine it keeps every core and the check costs a /proc read twice a second.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable

import psutil

log = logging.getLogger(__name__)

# How often the foreign load is measured, and how much of a core counts as taken: a neighbour must keep
# most of a core busy (a benchmark client or a log shipper does not) before a thread is given up.
_INTERVAL_S = 0.5
_TAKEN_CORE = 0.6
# Threads come back only after this many quiet intervals in a row, so a bursty neighbour does not flap.
_QUIET_INTERVALS = 3


def machine_busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent working (every process), from /proc/stat."""
    times = psutil.cpu_times()._asdict()
    # guest time is already inside user/nice; idle and iowait are not work.
    return sum(v for k, v in times.items() if k not in ("idle", "iowait", "guest", "guest_nice"))


def processes_cpu_s(processes: Iterable[psutil.Process]) -> float:
    """CPU seconds (user and system) the processes have used; one that has exited counts nothing."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def inferno_cpu_s() -> float:
    """CPU seconds of this process and, under `inferno serve`, of its supervisor and all of its children."""
    me = psutil.Process()
    parent = me.parent()
    if parent is not None and _is_inferno_supervisor(parent):
        return processes_cpu_s([parent, *parent.children(recursive=True)])
    return processes_cpu_s([me])


def _is_inferno_supervisor(process: psutil.Process) -> bool:
    try:
        return any("inferno" in part for part in process.cmdline()[:3])
    except psutil.Error:
        return False


class ThreadGovernor:
    def __init__(
        self,
        cores: int,
        busy_cpu_s: Callable[[], float] = machine_busy_cpu_s,
        own_cpu_s: Callable[[], float] = inferno_cpu_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores
        self.threads = cores
        self._busy = busy_cpu_s
        self._own = own_cpu_s
        self._clock = clock
        self._quiet = 0
        self._mark = (clock(), busy_cpu_s(), own_cpu_s())

    def poll(self) -> int | None:
        """The new thread count when it should change now, else None. Call between decodes."""
        now = self._clock()
        then, busy_then, own_then = self._mark
        if now - then < _INTERVAL_S:
            return None
        busy, own = self._busy(), self._own()
        self._mark = (now, busy, own)
        foreign = max(0.0, ((busy - busy_then) - (own - own_then)) / (now - then))
        wanted = max(1, self.cores - math.floor(foreign + 1 - _TAKEN_CORE))
        if wanted < self.threads:
            self._quiet = 0
            return self._set(wanted, foreign)
        if wanted > self.threads:
            self._quiet += 1
            if self._quiet >= _QUIET_INTERVALS:
                self._quiet = 0
                return self._set(wanted, foreign)
        else:
            self._quiet = 0
        return None

    def _set(self, threads: int, foreign: float) -> int:
        log.info(
            "llama.cpp threads %d -> %d: other processes use %.1f of %d cores",
            self.threads,
            threads,
            foreign,
            self.cores,
        )
        self.threads = threads
        return threads


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) or 1
