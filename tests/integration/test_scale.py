"""Scale-out: fair order through the whole service in both modes, several `remixbot worker` processes on
one queue, a worker killed mid-job, per-model time limits. Real service, SQLite, Redis and workers.

The ``noop`` models (engine/kinds/noop.py) take a known time, so a job can be caught mid-way.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace

import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from adapters.cli import models as cli_models
from bot import images
from bot.jobs import Origin, Status
from tests.integration.harness import Events, noop_models, start_worker, stop, wait_for_heartbeat

ALICE = Origin(platform="telegram", user_id="alice", chat_id="c1", user_name="Alice")
BOB = Origin(platform="telegram", user_id="bob", chat_id="c1", user_name="Bob")
GATEKEEPER = Origin(platform="telegram", user_id="gatekeeper", chat_id="c2")
TINY = images.encode_png(Image.new("RGB", (64, 64), (40, 90, 160)))


@pytest.fixture
def models_path(tmp_path):
    return noop_models(
        tmp_path,
        gate={"seconds": 3.0, "steps": 30},
        quick={"seconds": 0.15, "steps": 3},
        slow={"seconds": 2.0, "steps": 40},
        stuck={"seconds": 20.0, "steps": 200, "timeout": 0.5},
    )


@pytest.fixture
def roomy(settings, models_path):
    """Settings for one busy user: 25 queued jobs, no rate limit; one job at a time per group."""
    limits = replace(settings.limits, max_queued_per_user=25, rate_per_minute=10_000)
    return replace(settings, models_path=models_path, device="cpu", batch_size=1, limits=limits)


@pytest.fixture
def worker_env(env, models_path):
    return dict(env, REMIXBOT_MODELS=str(models_path), REMIXBOT_DEVICE="cpu", REMIXBOT_BATCH_SIZE="1")


def started_order(events: Events) -> list[str]:
    return [record.id for record, event in events.seen if event.status is Status.running and event.total == 0]


@pytest.mark.parametrize("mode", ["local", "arq"])
async def test_twenty_rerolls_never_starve_another_users_single_job(mode, roomy, redis_url, worker_env):
    process = None
    if mode == "arq":
        roomy = replace(roomy, redis_url=redis_url)
        process = start_worker(redis_url, worker_env, "classic")
        wait_for_heartbeat(redis_url, process)
    service = await build_service(roomy)
    events = Events()
    service.listen("telegram", events)
    try:
        parent = await events.done((await service.submit(ALICE, "warm --seed 1", TINY)).job.id)
        gate = await service.submit(GATEKEEPER, "--model gate", TINY)  # keeps the classic queue busy
        await events.until(lambda: gate.job.id in started_order(events))
        rerolls = [(await service.act(ALICE, f"reroll:{parent.id}")).job.id for _ in range(20)]
        single = await service.submit(BOB, "noir", TINY)
        assert single.position <= 2  # behind at most Alice's next one, not her twenty

        for job_id in [*rerolls, single.job.id]:
            assert (await events.done(job_id, timeout=60)).status is Status.done
        order = [job_id for job_id in started_order(events) if job_id in {*rerolls, single.job.id}]
        assert order.index(single.job.id) <= 1, order
        assert order[:1] + order[2:] == rerolls or order[1:] == rerolls  # Alice's in her own order

        heard = [e for e in events.of(single.job.id) if e.status is Status.queued and e.position]
        assert heard and heard[0].eta_seconds and heard[0].eta_seconds > 0, heard  # measured by her first job
        last = [e for e in events.of(rerolls[-1]) if e.status is Status.queued and e.position]
        assert last[0].eta_seconds > heard[0].eta_seconds  # further back, later
    finally:
        await close_service(service)
        if process is not None:
            stop(process)


async def test_two_workers_share_a_queue_and_run_each_job_once(roomy, redis_url, worker_env, capsys):
    workers = [start_worker(redis_url, worker_env, "classic") for _ in range(2)]
    try:
        beats = [wait_for_heartbeat(redis_url, process) for process in workers]
        for beat in beats:
            assert beat["device"] == "cpu" and beat["rss_bytes"] > 10_000_000 and beat["gpu"] is None
            assert beat["groups"] == ["classic"] and beat["availability"]["quick"] is None
        service = await build_service(replace(roomy, redis_url=redis_url))
        events = Events()
        service.listen("telegram", events)
        try:
            assert len(await service.queue.heartbeats()) == 2
            assert (await service.availability())["quick"] is None
            assert await cli_models(replace(roomy, redis_url=redis_url)) == 0
            listed = capsys.readouterr().out
            assert "workers: 2 live" in listed
            assert all(f"-{p.pid}: cpu, " in listed and "groups classic" in listed for p in workers)
            people = [ALICE, BOB] * 6
            tickets = [await service.submit(person, "--model quick", TINY) for person in people]
            records = [await events.done(ticket.job.id, timeout=60) for ticket in tickets]
        finally:
            await close_service(service)
    finally:
        logs = [stop(process) for process in workers]
    assert all(record.status is Status.done and len(record.outputs) == 1 for record in records)
    for ticket in tickets:
        ran_on = [n for n, log in enumerate(logs) if f"job {ticket.job.id} done" in log]
        assert len(ran_on) == 1, (ticket.job.id, ran_on)
        assert len([e for e in events.of(ticket.job.id) if e.status.finished]) == 1
    assert all(any(f"job {t.job.id} done" in log for t in tickets) for log in logs), "both workers took jobs"


async def test_a_worker_killed_mid_job_has_its_job_run_again_and_delivered_once(roomy, redis_url, worker_env):
    short_lease = dict(worker_env, REMIXBOT_JOB_LEASE="1")
    first = start_worker(redis_url, short_lease, "classic")
    wait_for_heartbeat(redis_url, first)
    service = await build_service(replace(roomy, redis_url=redis_url))
    events = Events()
    service.listen("telegram", events)
    second = None
    try:
        ticket = await service.submit(ALICE, "--model slow --n 2", TINY)
        job_id = ticket.job.id
        await events.until(lambda: any(e.status is Status.running and e.step >= 3 for e in events.of(job_id)))
        os.kill(first.pid, signal.SIGKILL)  # mid-job, no goodbye
        first.wait(10)
        second = start_worker(redis_url, short_lease, "classic")
        record = await events.done(job_id, timeout=60)

        assert record.status is Status.done
        assert [out.index for out in record.outputs] == [0, 1]  # one set of outputs
        assert len([e for e in events.of(job_id) if e.status.finished]) == 1
        stored = await service.history.job(job_id)
        assert stored.status is Status.done and len(stored.outputs) == 2
        files = sorted(path.name for path in (roomy.data_dir / "outputs").glob(f"{job_id}-*"))
        assert files == [f"{job_id}-0.png", f"{job_id}-1.png"]
    finally:
        await close_service(service)
        second_log = stop(second) if second is not None else ""
        first_log = stop(first)
    assert f"job {job_id} done" in second_log and f"job {job_id} done" not in first_log


async def test_a_model_past_its_own_timeout_is_stopped_with_a_message(roomy, redis_url, worker_env):
    process = start_worker(redis_url, worker_env, "classic")
    try:
        wait_for_heartbeat(redis_url, process)
        service = await build_service(replace(roomy, redis_url=redis_url))
        events = Events()
        service.listen("telegram", events)
        try:
            stuck = await events.done((await service.submit(ALICE, "--model stuck", TINY)).job.id, timeout=30)
            assert stuck.status is Status.failed
            assert "0.5 s limit for stuck" in stuck.error
            after = await events.done((await service.submit(ALICE, "warm", TINY)).job.id, timeout=30)
            assert after.status is Status.done  # the worker stopped the stuck job and goes on
        finally:
            await close_service(service)
    finally:
        stop(process)
