"""The port between the service and whatever runs jobs: the ``JobQueue`` the service submits to, the
``Engine`` a queue hands jobs to, and what both report about a run.

``LocalQueue`` (bot.queue.local) and ``ArqQueue`` (bot.queue.arq_queue) implement ``JobQueue``;
``engine.runner.Engine`` implements ``Engine``, in this process or in a worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot import metrics
from bot.jobs import Event, Job, Result
from bot.logs import job_context

log = logging.getLogger(__name__)

Listener = Callable[[Event], Awaitable[None]]


class ProgressReport(Protocol):
    """``on_progress(step, total)`` at a running job's steps; ``preview`` (a small JPEG) now and then."""

    def __call__(self, step: int, total: int, preview: bytes = b"") -> None: ...


# Called after the queue lost its connection and has it back: check the unfinished jobs again.
Reconnected = Callable[[], Awaitable[None]]


class QueueUnavailable(Exception):
    """The queue can't take a job right now (its Redis is unreachable or full); ``str()`` is user-safe."""


class Engine(Protocol):
    """What runs jobs: engine.runner.Engine, in this process or in a worker."""

    async def run(self, job: Job, on_progress: ProgressReport, cancel: threading.Event) -> Result: ...


class JobQueue(Protocol):
    async def start(self, listener: Listener, on_reconnect: Reconnected | None = None) -> None:
        """Deliver events to ``listener``; call ``on_reconnect`` whenever a lost connection is back."""

    async def close(self) -> None: ...
    async def submit(self, job: Job) -> int:
        """Enqueue; returns the queue position (1 = next). Submitting a known job id is a no-op.

        Raises QueueUnavailable when the job could not be queued."""

    async def position(self, job_id: str) -> int | None: ...
    async def cancel(self, job_id: str) -> bool:
        """True when the job was queued or running and is now being cancelled."""

    async def recover(self, job: Job) -> None:
        """After a restart or a reconnect: make sure an unfinished job from the history runs (once)
        or reports."""


def resident(engine: Engine) -> set[str]:
    """The models an engine holds in memory (empty for an engine that doesn't say)."""
    return set(getattr(engine, "resident", list)())


def observe(job: Job, result: Result, run_seconds: float, loaded_before: set[str], engine: Engine) -> None:
    """Metrics of one finished job: its outcome, run time and whether it loaded its model."""
    metrics.job_finished(job.group, job.request.model, result.status.value, run_seconds)
    if job.request.model not in loaded_before and job.request.model in resident(engine):
        metrics.model_loaded(job.request.model)


async def tell(listener: Listener | None, event: Event) -> bool:
    """Hand ``event`` to the listener; True when it took it without raising (a failure is logged)."""
    if listener is None:
        return False
    with job_context(event.job_id):  # the listener's log lines name the job
        try:
            await listener(event)
        except Exception:
            log.exception("event listener failed for job %s", event.job_id)
            return False
    return True
