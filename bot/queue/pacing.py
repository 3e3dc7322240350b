"""How often jobs hear about themselves: waiting jobs their position (one pass per queue at most
every second), running jobs their progress (a few steps a second at most). Both queues and the
worker use these, so every face sees the same rhythm."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Announcements:
    """Per-queue passes that tell waiting jobs their position, at most one pass per ``every`` seconds."""

    def __init__(self, announce: Callable[[str], Awaitable[None]], every: float):
        self._announce = announce
        self._every = every
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, float] = {}

    def soon(self, group: str) -> None:
        if group not in self._tasks:
            self._tasks[group] = asyncio.get_running_loop().create_task(self._pass(group))

    async def _pass(self, group: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(max(0.0, self._last.get(group, -self._every) + self._every - loop.time()))
        finally:
            self._tasks.pop(group, None)  # a change from now on schedules the next pass
        self._last[group] = loop.time()
        try:
            await self._announce(group)
        except Exception:
            log.exception("announcing positions in the %s queue failed", group)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ProgressGate:
    """Lets a job's progress through at most every ``every`` seconds, and always its first and last
    step: a chat shows a few updates a second at most, and every event costs the bot a history read."""

    def __init__(self, every: float = 0.25):
        self._every = every
        self._last = float("-inf")

    def passes(self, step: int, total: int) -> bool:
        now = time.monotonic()
        if step < total and now - self._last < self._every:
            return False
        self._last = now
        return True
