"""Riding out a Redis restart, on both sides of it.

redis-py reconnects by itself on the next command (a pooled connection is checked before use, a
pub/sub connection reconnects and subscribes again on the next read); what it doesn't do is wait.
``Backoff`` spaces the retries of a loop that lost Redis; ``subscription`` reads a pub/sub channel
through outages; ``patiently`` retries one operation that must not be lost (a worker's result) until
Redis is back or its patience runs out.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a Redis that is down, restarting or still loading its AOF looks like to a client
# (BusyLoadingError is a ConnectionError).
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


class Backoff:
    """Delays that double from ``first`` up to ``most`` seconds, with a little jitter so that many
    clients of one Redis don't reconnect in lockstep; ``reset`` once a retry succeeded."""

    def __init__(self, first: float = 0.1, most: float = 2.0):
        self._first = first
        self._most = most
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._most, self._next * 2)
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._next = self._first

    async def wait(self) -> None:
        await asyncio.sleep(self.next())


async def subscription(pubsub: PubSub, back: Callable[[], None]) -> AsyncIterator[dict[str, Any]]:
    """The messages of a subscribed ``pubsub``, for as long as they are read. A lost connection is retried
    with backoff (redis-py reconnects and subscribes again on the next read); ``back()`` is called each
    time it is back, since messages sent meanwhile are gone."""
    backoff, lost = Backoff(), False
    while True:
        try:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        except REDIS_DOWN as error:
            if not lost:
                log.warning("lost Redis (%s); reconnecting", type(error).__name__)
            lost = True
            await backoff.wait()
            continue
        if lost:
            lost = False
            backoff.reset()
            back()
        if message is not None:
            yield message


async def patiently(what: str, call: Callable[[], Awaitable[T]], patience: float) -> T:
    """``await call()``, retried with backoff while Redis is down, for up to ``patience`` seconds;
    then the last error is raised."""
    backoff = Backoff()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await call()
        except REDIS_DOWN as error:
            if loop.time() >= deadline:
                raise
            log.warning("%s: Redis is unreachable (%s); retrying", what, type(error).__name__)
            await backoff.wait()
