"""Observability: Prometheus metrics scraped from the real /metrics endpoints of a `remixbot worker`
process and of the bot, and log lines that carry their job's id (JSON lines, or plain for people)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from PIL import Image

from adapters.cli import build_service, close_service
from bot import images, metrics
from bot.jobs import Origin, Status
from bot.logs import JobIdFilter, PlainFormatter, job_context
from tests.integration.harness import Events, free_port, scrape, start_worker, stop, wait_for_heartbeat

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")
TINY = images.encode_png(Image.new("RGB", (64, 64), (200, 120, 60)))
CLASSIC = (("group", "classic"), ("model", "classic"))


async def test_a_worker_serves_job_metrics_and_logs_json_lines_with_the_job_id(settings, redis_url, env):
    port = free_port()
    process = start_worker(redis_url, dict(env, REMIXBOT_METRICS_PORT=str(port), REMIXBOT_LOG_FORMAT="json"), "classic")
    try:
        wait_for_heartbeat(redis_url, process)
        assert ("remixbot_jobs_total", (*CLASSIC, ("outcome", "done"))) not in scrape(port)
        service = await build_service(replace(settings, redis_url=redis_url))
        events = Events()
        service.listen("console", events)
        try:
            record = await events.done((await service.submit(ALICE, "warm", TINY)).job.id)
        finally:
            await close_service(service)
        after = scrape(port)
    finally:
        log = stop(process)
    assert record.status is Status.done
    assert after[("remixbot_jobs_total", (*CLASSIC, ("outcome", "done")))] == 1
    assert after[("remixbot_job_run_seconds_count", CLASSIC)] == 1
    assert after[("remixbot_job_wait_seconds_count", (("group", "classic"),))] == 1
    assert after[("remixbot_model_loads_total", (("model", "classic"),))] == 1
    assert after[("process_resident_memory_bytes", ())] > 10_000_000

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    about = [line for line in log.splitlines() if record.id in line]
    assert len(about) >= 2, log  # arq's start and end lines, ours
    assert all(json.loads(line).get("job_id") == record.id for line in about)
    assert "delayed=" not in log  # fair-share scores lie in the past by design; arq's note would mislead


async def test_the_bot_serves_queue_metrics_in_embedded_mode(settings):
    port = free_port()
    assert metrics.serve(port, "127.0.0.1")
    done = ("remixbot_jobs_total", (*CLASSIC, ("outcome", "done")))
    before = scrape(port).get(done, 0)
    service = await build_service(settings)
    events = Events()
    service.listen("console", events)
    try:
        record = await events.done((await service.submit(ALICE, "noir", TINY)).job.id)
        after = scrape(port)
    finally:
        await close_service(service)
    assert record.status is Status.done
    assert after[done] == before + 1
    assert after[("remixbot_queue_depth", (("group", "classic"),))] == 0


def test_plain_log_lines_name_the_job_they_are_about():
    def line(message: str, **extra) -> str:
        record = logging.LogRecord("remixbot", logging.INFO, __file__, 1, message, (), None)
        record.__dict__.update(extra)
        JobIdFilter().filter(record)
        return PlainFormatter().format(record)

    with job_context("3f9a0c1b2d4e"):
        assert line("rendering").endswith("remixbot: rendering [job 3f9a0c1b2d4e]")
        assert line("other", job_id="aaaaaaaaaaaa").endswith("[job aaaaaaaaaaaa]")  # its own extra wins
    assert line("idle").endswith("remixbot: idle")
