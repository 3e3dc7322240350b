"""Redis mode: the bot on ArqQueue with a real `remixbot worker` process and real Redis.

A worker stopped with SIGSTOP is a machine that stalls: its jobs wait in Redis for as long as the
test needs (the interaction token expires, the bot restarts), then it resumes with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import replace

import pytest
import redis
import redis.asyncio
import yarl

from bot.jobs import Event, Status
from bot.queue.wire import WORKER_PREFIX, result_key
from tests.adapters.discord.fake_server import custom_ids
from tests.adapters.discord.steps import eventually, remix, result, status_message
from tests.integration.harness import start_worker, stop

# Not 15 (the other suites') nor 13 (the queue benchmark's): see redis_url. A developer who named
# their own database (REMIXBOT_TEST_REDIS_URL, on a Redis shared with others) gets that one.
DATABASE = int(os.environ.get("REMIXBOT_TEST_REDIS_URL", "/12").rsplit("/", 1)[1] or 12)


@pytest.fixture
def redis_url(redis_url):
    """A Redis database of these tests' own, emptied before and after: a test run of another suite
    on the same Redis at the same time must neither run these jobs nor flush them away."""
    url = str(yarl.URL(redis_url).with_path(f"/{DATABASE}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def worker(redis_url, env):
    process = start_worker(redis_url, env, "classic")
    wait_for_heartbeat(redis_url, process)
    yield process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
    print("worker output:", stop(process)[-3000:])


def wait_for_heartbeat(redis_url: str, process, timeout: float = 60.0) -> None:
    """Until this worker process (not just any) has announced itself in Redis."""
    client = redis.Redis.from_url(redis_url)
    key = f"{WORKER_PREFIX}{socket.gethostname()}-{process.pid}"
    deadline = time.monotonic() + timeout
    try:
        while not client.exists(key):
            assert process.poll() is None, f"the worker exited: {process.stdout.read()}"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
    finally:
        client.close()


@pytest.fixture
def redis_settings(discord_settings, redis_url):
    return replace(discord_settings, redis_url=redis_url)


def freeze(process) -> None:
    assert process.poll() is None, "the worker is running"
    os.kill(process.pid, signal.SIGSTOP)


def thaw(process) -> None:
    os.kill(process.pid, signal.SIGCONT)


async def test_remix_then_reroll_after_a_restart(deploy, redis_settings, fake_discord, worker, images_dir):
    deployment = await deploy(redis_settings)
    server = fake_discord
    alice, bob = server.user("alice"), server.user("bob")
    _, first = await remix(server, alice, images_dir / "chelsea.png", prompt="cinematic")
    parent = await result(server, deployment.service, first)
    assert len(parent["attachments"]) == 1 and f"reroll:{first}" in custom_ids(parent)
    assert (await deployment.service.job(first)).engine == "classic", "the worker ran it"

    await deployment.restart()
    pressed = await server.press(parent, f"reroll:{first}", bob)
    assert (await pressed.acknowledged())["type"] == 6
    status = await server.message(
        lambda m: m.get("message_reference", {}).get("message_id") == parent["id"],
        what="the reroll's status message",
    )
    child = custom_ids(status)[0].split(":")[1]
    await result(server, deployment.service, child)
    record = await deployment.service.job(child)
    assert record.parent_job == first and record.status is Status.done
    assert record.origin.user_id == str(bob.id)


async def test_slow_jobs_land_in_their_status_message_after_the_token_expired(
    deploy, redis_settings, fake_discord, worker, redis_url, images_dir
):
    settings = replace(redis_settings, limits=replace(redis_settings.limits, max_queued_per_user=2))
    deployment = await deploy(settings)
    server = fake_discord
    cleo = server.user("cleo")
    freeze(worker)

    # 1. the job waits; the interaction token expires; the result still arrives (bot token)
    first_interaction, first = await remix(server, cleo, images_dir / "coffee.png", prompt="warm")
    status = await status_message(server, deployment.service, first)
    assert "Queued — position 1" in status["content"] and f"cancel:{first}" in custom_ids(status)
    server.expire(first_interaction)
    thaw(worker)
    message = await result(server, deployment.service, first)
    assert message["id"] == status["id"] and message["attachments"], "the status message became the result"
    assert not first_interaction.refused_calls, "nothing needed the expired interaction token"

    # 2. one job waits, one is cancelled, one is over the cap; the bot restarts while the worker
    #    finishes: the recovered result lands in its status message
    freeze(worker)
    second_interaction, second = await remix(server, cleo, images_dir / "coffee.png", prompt="cool")
    third_interaction, third = await remix(server, cleo, images_dir / "coffee.png", prompt="noir")
    third_status = await status_message(server, deployment.service, third)
    assert "Queued — position 2" in third_status["content"]
    over = await server.slash("remix", cleo, image=server.upload(images_dir / "coffee.png"), prompt="one more")
    assert "You already have 2 jobs waiting" in await over.text()

    cancel = await server.press(third_status, f"cancel:{third}", cleo)
    assert await cancel.text() == "Cancelled."
    await server.until(lambda: "✖️ Cancelled" in third_status["content"], what="the cancelled status")
    assert not custom_ids(third_status), "no buttons on a cancelled job"

    second_status = await status_message(server, deployment.service, second)
    server.expire(second_interaction)
    await deployment.stop()
    thaw(worker)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await eventually(lambda: client.exists(result_key(second)), 30, "the worker to store the result")
    finally:
        await client.aclose()
    await deployment.start()
    delivered = await result(server, deployment.service, second)
    assert delivered["id"] == second_status["id"] and delivered["attachments"]
    assert not second_interaction.refused_calls
    edits = [c for c in server.calls if c.method == "PATCH" and c.path.endswith(f"/messages/{second_status['id']}")]
    assert edits and all(c.authorized for c in edits), "edited as a channel message with the bot token"


async def test_progress_edits_are_throttled_and_show_the_newest_state(
    deploy, redis_settings, fake_discord, worker, images_dir
):
    interval = 0.3
    deployment = await deploy(redis_settings, status_interval=interval)
    server, service = fake_discord, deployment.service
    eli = server.user("eli")
    freeze(worker)
    _, ahead = await remix(server, eli, images_dir / "coffee.png")
    _, job_id = await remix(server, eli, images_dir / "chelsea.png")
    status = await status_message(server, service, job_id)
    assert "Queued — position 2" in status["content"]

    # the job ahead is cancelled: the queue announces the new position, and the message follows
    assert ahead in await (await server.slash("cancel", eli, job=ahead)).text()
    await server.until(lambda: "Queued — position 1" in status["content"], what="the new position shown")
    shown = len(status["_edits"])

    record = await service.job(job_id)
    for step in range(1, 10):  # a burst of progress, as a fast engine reports it
        await deployment.client.board.on_event(record, Event(job_id, Status.running, step=step, total=10))
    await server.until(lambda: "Rendering 90%" in status["content"], what="the newest progress")
    edits = status["_edits"]
    assert len(edits) == shown + 1, "nine events, one edit"
    assert edits[-1] - edits[-2] >= interval * 0.9, "not sooner than the interval after the last edit"

    assert job_id in await (await server.slash("cancel", eli)).text()
    await server.until(lambda: "✖️ Cancelled" in status["content"], what="the final state, not held back")
