"""Benchmark 1 — queue overhead: remixbot's arq path against bare arq, on the same Redis.

    python benchmarks/queue_overhead.py [--jobs 300] [--seconds 5] [--redis redis://127.0.0.1:6379/13]

Latency (one job at a time, each submitted at a random moment of the worker's poll cycle, a no-op
job, the worker in this process):
  bare arq         enqueue_job → the function starts; it returns → ``job.result()`` has it (1 ms polls)
  ArqQueue         ``ArqQueue.submit`` → the engine starts the job; the engine returns → the queue's
                   listener has the finished event with its result (fair-share scoring, positions,
                   the worker's lease, rates, events over pub/sub)
  whole core       ``Service.submit`` (decode, SQLite, files, limits) → the engine starts; the engine
                   returns → the platform handler has the finished record (outputs on disk, SQLite)
Throughput: N users each submit a job and wait for its result, again and again, through the whole
core (request → SQLite → ArqQueue → a `remixbot worker` process → history → handler).

The no-op job is the ``noop`` model kind (engine/kinds/noop.py) on a 64×64 image: the engine hands
the source back, so what is measured is the queue. The Redis database given is flushed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from adapters.cli import build_service, close_service  # noqa: E402
from bot import images  # noqa: E402
from bot.jobs import Action, Event, Job, Origin, Request, Status, new_job_id  # noqa: E402
from bot.models import load_models  # noqa: E402
from bot.queue.arq_queue import ArqQueue  # noqa: E402
from bot.settings import load_settings  # noqa: E402

TINY = images.encode_png(Image.new("RGB", (64, 64), (90, 140, 200)))
MODELS = '\n[models.noop]\nkind = "noop"\ngroup = "bench"\ndescription = "hands the source back"\n'


class TimedEngine:
    """The real engine, with the moment each job reaches it and leaves it noted."""

    def __init__(self, engine):
        self.engine = engine
        self.models = engine.models
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    async def run(self, job: Job, on_progress, cancel: threading.Event):
        self.started[job.id] = time.perf_counter()
        result = await self.engine.run(job, on_progress, cancel)
        self.finished[job.id] = time.perf_counter()
        return result

    def concurrency(self, group: str) -> int:
        return self.engine.concurrency(group)

    def resident(self) -> list[str]:
        return self.engine.resident()


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def bare_arq(redis_url: str, jobs: int, poll_delay: float) -> tuple[list[float], list[float]]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    started: dict[str, float] = {}
    finished: dict[str, float] = {}

    async def noop(ctx: dict[str, Any]) -> None:
        started[ctx["job_id"]] = time.perf_counter()
        finished[ctx["job_id"]] = time.perf_counter()

    settings = RedisSettings.from_dsn(redis_url)
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name="bench:bare",
        redis_settings=settings,
        max_jobs=1,
        poll_delay=poll_delay,
        handle_signals=False,
        keep_result=60,
    )
    running = asyncio.create_task(worker.async_run())
    pool = await create_pool(settings)
    submit_start, finish_delivered = [], []
    try:
        for _ in range(jobs):
            await asyncio.sleep(random.uniform(0, poll_delay))  # submit at any moment of the worker's poll
            submitted = time.perf_counter()
            job = await pool.enqueue_job("noop", _queue_name="bench:bare")
            await job.result(poll_delay=0.001)
            delivered = time.perf_counter()
            submit_start.append(started[job.job_id] - submitted)
            finish_delivered.append(delivered - finished[job.job_id])
    finally:
        await asyncio.gather(worker.close(), return_exceptions=True)  # arq's close re-raises the cancels
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pool.aclose()
    return submit_start, finish_delivered


async def start_worker_here(models, redis_url: str, poll_delay: float):
    """Our worker (engine.worker) in this process, serving the bench group, on a timed engine."""
    from engine.runner import Engine
    from engine.worker import build_workers, serve

    engine = TimedEngine(Engine(models, "cpu", batch_size=1))
    workers = build_workers(engine, redis_url, ["bench"], job_timeout=60, result_ttl=600, poll_delay=poll_delay)
    task = asyncio.create_task(serve(workers, ["bench"]))
    while "redis" not in workers[0].ctx:
        await asyncio.sleep(0.01)
    return engine, task


async def through_arq_queue(models, redis_url: str, jobs: int, poll_delay: float):
    engine, worker = await start_worker_here(models, redis_url, poll_delay)
    done: dict[str, asyncio.Future] = {}
    delivered: dict[str, float] = {}

    async def listener(event: Event) -> None:
        if event.status.finished and event.result is not None:
            delivered[event.job_id] = time.perf_counter()
            done[event.job_id].set_result(event)

    queue = ArqQueue(redis_url)
    await queue.start(listener)
    submit_start, finish_delivered = [], []
    origin = Origin(platform="bench", user_id="u1", chat_id="c1")
    request = Request(prompt="", model="noop", strength=0.5, seed=1, num_inference_steps=1, guidance_scale=0.0)
    try:
        for _ in range(jobs):
            job = Job(id=new_job_id(), action=Action.remix, request=request, image=TINY, origin=origin, group="bench")
            done[job.id] = asyncio.get_running_loop().create_future()
            await asyncio.sleep(random.uniform(0, poll_delay))
            submitted = time.perf_counter()
            await queue.submit(job)
            event = await done[job.id]
            assert event.status is Status.done, event
            submit_start.append(engine.started[job.id] - submitted)
            finish_delivered.append(delivered[job.id] - engine.finished[job.id])
    finally:
        await queue.close()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    return submit_start, finish_delivered


async def through_the_core(settings, models, jobs: int, poll_delay: float):
    engine, worker = await start_worker_here(models, settings.redis_url, poll_delay)
    service = await build_service(settings)
    done: dict[str, asyncio.Future] = {}
    delivered: dict[str, float] = {}

    async def handler(record, event: Event) -> None:
        if event.status.finished:
            delivered[record.id] = time.perf_counter()
            done[record.id].set_result(record)

    service.listen("bench", handler)
    origin = Origin(platform="bench", user_id="u1", chat_id="c1")
    submit_start, finish_delivered = [], []
    try:
        for _ in range(jobs):
            await asyncio.sleep(random.uniform(0, poll_delay))
            submitted = time.perf_counter()
            ticket = await service.submit(origin, "--model noop", TINY)
            done.setdefault(ticket.job.id, asyncio.get_running_loop().create_future())
            record = await done[ticket.job.id]
            assert record.status is Status.done and record.outputs, record
            submit_start.append(engine.started[ticket.job.id] - submitted)
            finish_delivered.append(delivered[ticket.job.id] - engine.finished[ticket.job.id])
    finally:
        await close_service(service)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    return submit_start, finish_delivered


def cpu_seconds(*processes: psutil.Process) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


class Finishes:
    """A future per job for its end, whichever comes first: the end, or someone waiting for it."""

    def __init__(self):
        self._futures: dict[str, asyncio.Future] = {}

    def of(self, job_id: str) -> asyncio.Future:
        return self._futures.setdefault(job_id, asyncio.get_running_loop().create_future())

    def end(self, job_id: str, status: Status) -> None:
        future = self.of(job_id)
        if not future.done():
            future.set_result(status)


async def open_path(whole_core: bool, settings, finishes: Finishes):
    """What users submit to: the whole core (Service) or the ArqQueue alone. Returns submit, the queue
    (for heartbeats) and close."""
    if whole_core:
        service = await build_service(settings)

        async def handler(record, event: Event) -> None:
            if event.status.finished:
                finishes.end(record.id, event.status)

        service.listen("bench", handler)

        async def submit(origin: Origin) -> str:
            return (await service.submit(origin, "--model noop", TINY)).job.id

        return submit, service.queue, lambda: close_service(service)

    async def listener(event: Event) -> None:
        if event.status.finished:
            finishes.end(event.job_id, event.status)

    queue = ArqQueue(settings.redis_url)
    await queue.start(listener)
    request = Request(prompt="", model="noop", strength=0.5, seed=1, num_inference_steps=1, guidance_scale=0.0)

    async def submit_job(origin: Origin) -> str:
        job = Job(id=new_job_id(), action=Action.remix, request=request, image=TINY, origin=origin, group="bench")
        await queue.submit(job)
        return job.id

    return submit_job, queue, queue.close


async def throughput(
    settings, users: int, seconds: float, workers: int, worker_env: dict[str, str], whole_core: bool = True
) -> tuple[float, float, float]:
    """Jobs per second with ``users`` each submitting and waiting, again and again, served by
    ``workers`` `remixbot worker` processes; and the CPU milliseconds per job of this (the bot's)
    process and of the workers."""
    command = [sys.executable, "-m", "adapters.cli", "worker", "--groups", "bench"]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    finishes = Finishes()
    submit, queue, close = await open_path(whole_core, settings, finishes)
    try:
        while len(await queue.heartbeats()) < workers:
            await asyncio.sleep(0.05)
        counts = [0] * users
        warm = time.perf_counter() + 1.0  # a second of warm-up, then count
        stop_at = warm + seconds

        async def user(n: int) -> None:
            origin = Origin(platform="bench", user_id=f"user{n}", chat_id=f"chat{n % 4}")
            while time.perf_counter() < stop_at:
                assert await finishes.of(await submit(origin)) is Status.done
                counts[n] += 1

        tasks = [asyncio.create_task(user(n)) for n in range(users)]
        while time.perf_counter() < warm:
            await asyncio.sleep(0.01)
        bot, children = psutil.Process(), [psutil.Process(process.pid) for process in processes]
        before, bot_cpu, workers_cpu = sum(counts), cpu_seconds(bot), cpu_seconds(*children)
        started = time.perf_counter()
        await asyncio.gather(*tasks)
        jobs = sum(counts) - before
        return (
            jobs / (time.perf_counter() - started),
            1000 * (cpu_seconds(bot) - bot_cpu) / jobs,
            1000 * (cpu_seconds(*children) - workers_cpu) / jobs,
        )
    finally:
        await close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(20)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--redis", default=os.environ.get("REMIXBOT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--users", default="1,8,64", help="concurrent users per throughput run")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for the throughput runs")
    args = parser.parse_args(argv)

    import logging

    import redis

    logging.basicConfig(level=logging.WARNING)
    redis.Redis.from_url(args.redis).flushdb()
    base = load_settings({k: v for k, v in os.environ.items() if k.startswith("REMIXBOT_")})
    poll_delay = base.poll_delay
    with tempfile.TemporaryDirectory() as tmp:
        models_path = Path(tmp) / "models.toml"
        models_path.write_text((ROOT / "config" / "models.toml").read_text(encoding="utf-8") + MODELS)
        models = load_models(models_path)
        limits = replace(base.limits, rate_per_minute=10**9)
        settings = replace(
            base,
            redis_url=args.redis,
            models_path=models_path,
            device="cpu",
            batch_size=1,
            data_dir=Path(tmp) / "data",
            limits=limits,
        )
        print(
            f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
            f"Python {sys.version.split()[0]}, worker poll delay {poll_delay * 1000:g} ms, "
            f"{args.jobs} jobs per latency run\n"
        )
        rows = [
            ("bare arq", await bare_arq(args.redis, args.jobs, poll_delay)),
            ("ArqQueue", await through_arq_queue(models, args.redis, args.jobs, poll_delay)),
            ("whole core", await through_the_core(settings, models, args.jobs, poll_delay)),
        ]
        bare = [percentiles(samples) for samples in rows[0][1]]
        print("| path | submit→start p50 | p99 | finish→delivered p50 | p99 | p50 overhead vs bare arq |")
        print("|---|---|---|---|---|---|")
        for name, (submit_start, finish_delivered) in rows:
            (s50, s99), (f50, f99) = percentiles(submit_start), percentiles(finish_delivered)
            overhead = (s50 - bare[0][0]) + (f50 - bare[1][0])
            print(
                f"| {name} | {s50:.2f} ms | {s99:.2f} ms | {f50:.2f} ms | {f99:.2f} ms | "
                f"{'—' if name == 'bare arq' else f'{overhead:+.2f} ms'} |"
            )

        worker_env = {
            **os.environ,
            "REDIS_URL": args.redis,
            "REMIXBOT_MODELS": str(models_path),
            "REMIXBOT_DEVICE": "cpu",
            "REMIXBOT_LOG_LEVEL": "WARNING",
        }
        workers = f"{args.workers} worker process{'es' if args.workers > 1 else ''}"
        print(f"\n| path ({workers}) | concurrent users | jobs/s | bot CPU per job | worker CPU per job |")
        print("|---|---|---|---|---|")
        for whole_core in (True, False):
            for users in [int(n) for n in args.users.split(",")]:
                fresh = replace(settings, data_dir=Path(tmp) / f"data-{users}-{whole_core}")
                rate, bot_ms, worker_ms = await throughput(
                    fresh, users, args.seconds, args.workers, worker_env, whole_core
                )
                print(
                    f"| {'whole core' if whole_core else 'ArqQueue alone'} | {users} | {rate:.0f} | "
                    f"{bot_ms:.2f} ms | {worker_ms:.2f} ms |"
                )


if __name__ == "__main__":
    asyncio.run(main())
