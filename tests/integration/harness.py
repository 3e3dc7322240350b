"""Helpers for tests that drive the real service: collect its events and wait for conditions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from bot.history import JobRecord
from bot.jobs import Event, Status

ROOT = Path(__file__).resolve().parents[2]


class Events:
    """A platform handler that records every (record, event) it is given."""

    def __init__(self):
        self.seen: list[tuple[JobRecord, Event]] = []
        self._changed = asyncio.Event()

    async def __call__(self, record: JobRecord, event: Event) -> None:
        self.seen.append((record, event))
        self._changed.set()

    def of(self, job_id: str) -> list[Event]:
        return [event for record, event in self.seen if record.id == job_id]

    def finished(self, job_id: str) -> JobRecord | None:
        return next((record for record, event in self.seen if record.id == job_id and event.status.finished), None)

    async def until(self, predicate, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met in {timeout}s; saw {[(r.id, e.status) for r, e in self.seen]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return value

    async def done(self, job_id: str, timeout: float = 60.0) -> JobRecord:
        return await self.until(lambda: self.finished(job_id), timeout)


def start_worker(redis_url: str, env: dict[str, str], *groups: str) -> subprocess.Popen:
    """A real `remixbot worker` process on the test's Redis database."""
    worker_env = dict(env, REDIS_URL=redis_url, REMIXBOT_LOG_LEVEL="INFO")
    args = [sys.executable, "-m", "adapters.cli", "worker"]
    if groups:
        args += ["--groups", ",".join(groups)]
    return subprocess.Popen(args, cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for_worker(redis_url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the worker's heartbeat is in Redis (it serves its queues from then on)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while not client.keys("remixbot:worker:*"):
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {process.stdout.read()}")
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            time.sleep(0.05)
    finally:
        client.close()


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


def done_statuses(events: Events) -> dict[str, Status]:
    return {record.id: event.status for record, event in events.seen if event.status.finished}



