"""``LocalQueue``, the embedded default: the engine runs in this process (its own thread per model
group, so the event loop never blocks).

Waiting jobs are ordered by fair share (``bot.fairness``: users of a chat/server take turns, servers
share by weight); they hear their position and an ETA from measured seconds per job of each model
whenever their position changes (at most once a second per queue). A queued or running job can be
cancelled: a running one stops at its next step (the engine checks a flag at every step).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import logging
import threading
import time
from collections.abc import Mapping

from bot import metrics
from bot.fairness import Share, estimate, server_of, update_rate
from bot.jobs import Event, Job, Result, Status
from bot.logs import job_context
from bot.queue.pacing import Announcements, ProgressGate
from bot.queue.port import Engine, Listener, Reconnected, observe, resident, tell

log = logging.getLogger(__name__)


class LocalQueue:
    """In-process queue: waiting jobs in fair order and one consumer task per model group.

    A group runs one job at a time, or as many as the engine's ``concurrency(group)`` says (so its
    batcher sees them together).
    """

    def __init__(self, engine: Engine, *, weights: Mapping[str, float] | None = None, announce_every: float = 1.0):
        self._engine = engine
        self._weights = dict(weights or {})  # server (bot.fairness.server_of) → weight; 1 when absent
        self._listener: Listener | None = None
        # group → its waiting jobs as (score, order of arrival, job id), smallest first
        self._waiting: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        self._jobs: dict[str, Job] = {}  # waiting jobs by id
        self._shares: dict[str, Share] = collections.defaultdict(Share)
        self._scores: dict[str, dict[str, int]] = collections.defaultdict(dict)  # group → running job → score
        self._order = itertools.count()
        self._wake: dict[str, asyncio.Event] = {}
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, tuple[Job, threading.Event]] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._rates: dict[str, float] = {}  # model → moving average of seconds per job
        self._announced: dict[str, int] = {}  # waiting job → the position it last heard
        self._announcements = Announcements(self._announce, announce_every)

    async def start(self, listener: Listener, on_reconnect: Reconnected | None = None) -> None:
        self._listener = listener  # nothing to reconnect to: on_reconnect is never called

    async def close(self) -> None:
        for _, cancel in self._running.values():
            cancel.set()
        tasks = [*self._consumers.values(), *self._runs]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumers.clear()
        await self._announcements.close()

    async def submit(self, job: Job) -> int:
        if job.id in self._jobs or job.id in self._running:
            return await self.position(job.id) or 0
        waiting = self._waiting[job.group]
        heads = list(self._scores[job.group].values()) + ([waiting[0][0]] if waiting else [])
        weight = self._weights.get(server_of(job.origin), 1.0)
        score = self._shares[job.group].tag(job.origin, min(heads, default=None), weight)
        bisect.insort(waiting, (score, next(self._order), job.id))
        self._jobs[job.id] = job
        if job.group not in self._consumers:
            self._wake[job.group] = asyncio.Event()
            self._consumers[job.group] = asyncio.create_task(self._consume(job.group))
        self._wake[job.group].set()
        self._changed(job.group)
        return await self.position(job.id) or 0

    async def recover(self, job: Job) -> None:
        await self.submit(job)

    async def position(self, job_id: str) -> int | None:
        if job_id in self._running:
            return 0
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return next(i + 1 for i, (_, _, waiting) in enumerate(self._waiting[job.group]) if waiting == job_id)

    async def cancel(self, job_id: str) -> bool:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            waiting = self._waiting[job.group]
            waiting[:] = [entry for entry in waiting if entry[2] != job_id]
            self._announced.pop(job_id, None)
            self._changed(job.group)
            await self._emit(Event(job_id, Status.cancelled, result=Result(job_id, Status.cancelled)))
            return True
        if job_id in self._running:
            self._running[job_id][1].set()
            return True
        return False

    def rates(self) -> dict[str, float]:
        """Model → measured seconds per job (moving average)."""
        return dict(self._rates)

    def _changed(self, group: str) -> None:
        metrics.queue_depth(group, len(self._waiting[group]))
        self._announcements.soon(group)

    async def _consume(self, group: str) -> None:
        waiting, wake, running = self._waiting[group], self._wake[group], self._scores[group]
        concurrency = getattr(self._engine, "concurrency", None)
        limit = max(1, int(concurrency(group))) if concurrency else 1
        while True:
            while not waiting or len(running) >= limit:
                wake.clear()
                await wake.wait()
            score, _, job_id = waiting.pop(0)
            job = self._jobs.pop(job_id)
            self._announced.pop(job_id, None)
            running[job_id] = score
            cancel = threading.Event()
            self._running[job.id] = (job, cancel)
            self._changed(group)
            task = asyncio.create_task(self._run(job, cancel))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    def _ran(self, job: Job) -> None:
        self._scores[job.group].pop(job.id, None)
        self._wake[job.group].set()

    async def _run(self, job: Job, cancel: threading.Event) -> None:
        with job_context(job.id):
            started = time.time()
            metrics.job_started(job.group, started - job.created_at)
            await self._emit(Event(job.id, Status.running))

            gate = ProgressGate()

            def on_progress(step: int, total: int, preview: bytes = b"") -> None:
                if preview or gate.passes(step, total):  # a preview is rare (engine-throttled): never dropped
                    event = Event(job.id, Status.running, step=step, total=total, preview=preview)
                    asyncio.ensure_future(self._emit(event))

            loaded = resident(self._engine)
            try:
                result = await self._engine.run(job, on_progress, cancel)
            except Exception:  # the engine turns errors into results; this is a last line of defence
                log.exception("engine crashed on job %s", job.id)
                result = Result(job.id, Status.failed, error="Something went wrong while rendering.")
            finally:
                del self._running[job.id]
                self._ran(job)
            model = job.request.model
            if result.status is Status.done:
                self._rates[model] = update_rate(self._rates.get(model), result.seconds)
            observe(job, result, time.time() - started, loaded, self._engine)
            await self._emit(Event(job.id, result.status, result=result))

    async def _announce(self, group: str) -> None:
        running = [job.request.model for job, _ in self._running.values() if job.group == group]
        waiting = [self._jobs[job_id] for _, _, job_id in self._waiting[group] if job_id in self._jobs]
        models = [job.request.model for job in waiting]
        for i, job in enumerate(waiting):
            if self._announced.get(job.id) == i + 1 or job.id not in self._jobs:
                continue
            self._announced[job.id] = i + 1
            eta = estimate(models[i], running=running, waiting=models[:i], rates=self._rates, workers=1)
            await self._emit(Event(job.id, Status.queued, position=i + 1, eta_seconds=eta))

    async def _emit(self, event: Event) -> None:
        await tell(self._listener, event)
