"""Albums: Telegram delivers each picture of a media group as its own message, so they are
gathered here until the group has been quiet for a moment, then handed over in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from telegram import Message

log = logging.getLogger(__name__)

OnAlbum = Callable[[list[Message]], Awaitable[None]]


class Albums:
    def __init__(self, wait: float, on_album: OnAlbum):
        self._wait = wait
        self._on_album = on_album
        self._messages: dict[tuple[int, str], list[Message]] = {}
        self._timers: dict[tuple[int, str], asyncio.Task[None]] = {}

    def add(self, message: Message) -> None:
        """Keep a message of a media group; the group is handed over after ``wait`` seconds of quiet."""
        key = (message.chat.id, str(message.media_group_id))
        self._messages.setdefault(key, []).append(message)
        timer = self._timers.get(key)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.create_task(self._close_after_quiet(key))

    async def _close_after_quiet(self, key: tuple[int, str]) -> None:
        await asyncio.sleep(self._wait)
        self._timers.pop(key, None)
        messages = sorted(self._messages.pop(key, []), key=lambda m: m.message_id)
        try:
            await self._on_album(messages)
        except Exception:  # a background task: nobody else would see it
            log.exception("handling album %s failed", key[1])

    async def close(self) -> None:
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._timers.clear()
        self._messages.clear()
