"""core/runtime/loop_mailbox.py: callbacks posted from another thread run on the loop, in order, and a
mailbox closes cleanly whether its loop still runs or is closed."""

from __future__ import annotations

import asyncio
import os
import threading

from inferno.core.runtime.loop_mailbox import LoopMailbox


def test_callbacks_posted_from_a_thread_run_on_the_loop_in_order() -> None:
    async def scenario() -> tuple[list[int], set[int]]:
        loop = asyncio.get_running_loop()
        mailbox = LoopMailbox(loop)
        seen: list[int] = []
        threads: set[int] = set()
        done = asyncio.Event()

        def record(value: int) -> None:
            seen.append(value)
            threads.add(threading.get_ident())
            if value == 999:
                done.set()

        def poster() -> None:
            for value in range(1000):  # more wake-ups than the pipe holds: a full pipe must not lose any
                mailbox.post(lambda value=value: record(value))

        worker = threading.Thread(target=poster)
        worker.start()
        await asyncio.wait_for(done.wait(), 10)
        worker.join()
        mailbox.close()
        await asyncio.sleep(0)
        return seen, threads

    seen, threads = asyncio.run(scenario())
    assert seen == list(range(1000))
    assert threads == {threading.main_thread().ident}


def test_callbacks_posted_just_before_close_still_run() -> None:
    """The engine thread's last events (a shutdown's errors) are posted and the mailbox closed at once; the
    close, scheduled on the loop, must not drop them."""

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        mailbox = LoopMailbox(loop)
        seen: list[int] = []

        def post_and_close() -> None:
            for value in range(3):
                mailbox.post(lambda value=value: seen.append(value))
            mailbox.close()

        worker = threading.Thread(target=post_and_close)
        worker.start()
        worker.join()
        for _ in range(10):
            await asyncio.sleep(0)
        return seen

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_mailbox_closes_its_pipe_after_its_loop_is_gone() -> None:
    loop = asyncio.new_event_loop()
    mailbox = LoopMailbox(loop)
    read_fd = mailbox._read_fd
    loop.close()
    mailbox.close()
    mailbox.post(lambda: None)  # dropped, not written to a closed descriptor
    try:
        os.fstat(read_fd)
    except OSError:
        return
    raise AssertionError("the mailbox's pipe is still open")
