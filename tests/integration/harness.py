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
    return subprocess.Popen(args, cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


def noop_models(directory: Path, **entries: dict) -> Path:
    """config/models.toml plus ``noop`` models (engine/kinds/noop.py) of known duration, as a file.

    ``noop_models(tmp_path, gate={"seconds": 2, "steps": 20})`` adds ``[models.gate]`` (kind noop,
    group classic unless given). Run them with REMIXBOT_DEVICE=cpu / settings.device="cpu".
    """
    lines = [(ROOT / "config" / "models.toml").read_text(encoding="utf-8")]
    for name, options in entries.items():
        lines.append(f'\n[models.{name}]\nkind = "noop"')
        for key, value in {"group": "classic", **options}.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path = directory / "models.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for_heartbeat(redis_url: str, process: subprocess.Popen, timeout: float = 60.0) -> dict:
    """Until this worker process's own heartbeat is in Redis; returns it."""
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            keys = client.keys(f"remixbot:worker:*-{process.pid}")
            if keys and (value := client.get(keys[0])):
                return json.loads(value)
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {process.stdout.read()}")
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            time.sleep(0.05)
    finally:
        client.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int, timeout: float = 30.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples a real /metrics endpoint serves: (name, sorted labels) → value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class RedisServer:
    """A redis-server of a test's own — a free port, its own directory — to kill and start again.

    ``aof`` turns on append-only persistence (as docker-compose.yml does); without it a restart loses
    everything. ``extra`` adds arguments (say, a password)."""

    def __init__(self, directory: Path, *, aof: bool, extra: tuple[str, ...] = ()):
        import shutil

        if shutil.which("redis-server") is None:
            import pytest

            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def url(self, database: int = 0, password: str = "") -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        """Start (again, on the same port and directory) and wait until it answers PING."""
        import redis

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec"]
        self.process = subprocess.Popen([*args, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.AuthenticationError:
                    return  # it answers: it wants a password
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye (with AOF, what was written so far survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
