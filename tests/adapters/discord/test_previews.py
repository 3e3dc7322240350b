"""Live previews on Discord, through the real path: a worker's events (played on the Redis wire,
``tests/adapters/played_worker.py``) reach the real ArqQueue, the service, the core's status
tracker and the real discord.py client, which edits the status message on the fake Discord."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.jobs import Event, Status
from tests.adapters.discord.fake_server import custom_ids
from tests.adapters.discord.steps import remix, result, status_message
from tests.adapters.played_worker import JPEG_MAGIC, PlayedWorker, jpeg, png

EDIT_INTERVAL = 0.2
PREVIEW_INTERVAL = 0.6


@pytest.fixture
async def worker(redis_url):
    played = PlayedWorker(redis_url)
    await played.beat("classic", ["classic"], seconds_per_job=95.0)
    yield played
    await played.close()


async def test_previews_replace_the_status_attachment_throttled_and_the_result_replaces_them(
    deploy, discord_settings, redis_url, fake_discord, worker, images_dir
):
    settings = replace(discord_settings, redis_url=redis_url)
    deployment = await deploy(settings, status_interval=EDIT_INTERVAL, preview_interval=PREVIEW_INTERVAL)
    server, service = fake_discord, deployment.service
    ana = server.user("ana")
    _, job_id = await remix(server, ana, images_dir / "chelsea.png", prompt="a watercolor harbor")
    status = await status_message(server, service, job_id)
    await server.until(lambda: "ready in about 2 min" in status["content"], 10, "the queue's ETA")

    await worker.publish(Event(job_id, Status.running))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for step in range(1, 21):  # a preview every 50 ms: far more than a channel may be shown
        await worker.publish(Event(job_id, Status.running, step=step, total=20, preview=jpeg(step * 12)))
        await asyncio.sleep(0.05)
    took = loop.time() - started

    attached = server.attached_by_edit
    newest = jpeg(240)
    await server.until(
        lambda: attached.get(int(status["id"])) and attached[int(status["id"])][-1][2] == newest,
        10,
        "the newest preview attached",
    )
    assert "Rendering 100%" in status["content"] and f"cancel:{job_id}" in custom_ids(status)
    assert len(status["attachments"]) == 1, "each preview replaces the last"
    previews = attached[int(status["id"])]
    assert all(data.startswith(JPEG_MAGIC) and name.endswith(".jpg") for _, name, data in previews)
    # unscreened (the content filter sees results): behind a spoiler in a channel that isn't age-restricted
    assert all(name.startswith("SPOILER_") for _, name, _ in previews)
    assert len(previews) <= took / PREVIEW_INTERVAL + 2, f"{len(previews)} previews in {took:.1f} s"
    # throttled: times are when the fake heard each edit, so allow for a busy machine's jitter
    times = [at for at, _, _ in previews]
    assert all(b - a >= PREVIEW_INTERVAL / 2 for a, b in zip(times, times[1:], strict=False)), "throttled"
    edits = status["_edits"]
    assert len(edits) <= (edits[-1] - edits[0]) / EDIT_INTERVAL + 2, f"{len(edits)} edits: over the limit"

    # the result replaces the preview: the same message, the picture instead of the JPEG
    picture = png()
    await worker.finish(job_id, picture)
    shown = await result(server, service, job_id)
    assert shown["id"] == status["id"] and f"reroll:{job_id}" in custom_ids(shown)
    (attachment,) = shown["attachments"]
    assert server.files[int(attachment["id"])] == picture and attachment["filename"].endswith(".png")
    assert (await service.history.job(job_id)).status is Status.done
