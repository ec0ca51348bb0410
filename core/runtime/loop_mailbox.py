"""Callbacks posted to an asyncio event loop from the engine thread, without letting go of the GIL.

loop.call_soon_threadsafe wakes the loop with a socket send, which releases the GIL; the woken loop then
takes it and does its work on the events while the engine thread waits to get the GIL back, before it can
start the next decode (0.1 to 0.5 ms a step with one stream on 2 CPU cores). Here the wake-up is a write(2)
made through ctypes.PyDLL, which keeps the GIL: the engine thread goes on to its decode, which releases the
GIL, and the loop does its work meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from collections import deque
from collections.abc import Callable

# PyDLL: calls keep the GIL (CDLL's let go of it).
_libc_write = ctypes.PyDLL(None).write
_libc_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_libc_write.restype = ctypes.c_ssize_t


class LoopMailbox:
    """Created on the loop's thread; post from any thread; close once nothing posts any more."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._posted: deque[Callable[[], None]] = deque()
        self._closed = False
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self._read_fd, self._run_posted)

    def post(self, callback: Callable[[], None]) -> None:
        """callback runs on the loop soon; dropped once the mailbox is closed."""
        if self._closed:
            return
        self._posted.append(callback)
        # A full pipe (EAGAIN) already holds a wake-up the loop has yet to read.
        _libc_write(self._write_fd, b"\0", 1)

    def close(self) -> None:
        """Callbacks posted before still run; later ones are dropped."""
        self._closed = True
        try:
            self._loop.call_soon_threadsafe(self._close_on_loop)
        except RuntimeError:  # the loop is closed, and its selector with it
            self._close_fds()

    def _run_posted(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        while self._posted:
            self._posted.popleft()()

    def _close_on_loop(self) -> None:
        # What was posted before close runs first: the loop may run this before it sees the pipe readable.
        self._run_posted()
        self._loop.remove_reader(self._read_fd)
        self._close_fds()

    def _close_fds(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)
