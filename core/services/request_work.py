"""Where CPU-heavy request work runs: chat templating, tokenizing and grammar building leave the event loop
for a small pool, so one large request cannot hold up health checks, streams or other requests."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Enough to keep the cores busy; more would only add contention while requests queue here, not on the loop.
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="inferno-request")


async def off_loop(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """work(*args, **kwargs) on the request pool, in a copy of this context (as asyncio.to_thread); its
    exception is raised here."""
    call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)
