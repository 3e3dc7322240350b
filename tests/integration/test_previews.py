"""Live previews reach the chat faces: a running job's Events carry a small JPEG of its latents, from
the real engine (tiny diffusers pipeline) through the LocalQueue and the service, and across Redis
(msgpack on the events channel) to an ArqQueue service."""

from __future__ import annotations

import io
import time
from dataclasses import replace

import pytest
import redis.asyncio
from PIL import Image

from adapters.cli import build_service, close_service
from bot.history import History
from bot.jobs import Event, Origin, Status
from bot.queue.local import LocalQueue
from bot.queue.wire import encode_event, events_channel, redis_settings
from bot.service import Service
from tests.integration.harness import Events

pytest.importorskip("torch")
pytest.importorskip("diffusers")

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


def jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "JPEG"
    return image


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tests.engine.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


async def test_a_running_job_sends_a_jpeg_preview_through_the_local_queue_and_the_service(
    settings, tiny_folder, coffee
):
    from engine import preview
    from engine.runner import Engine
    from tests.engine.tiny_jobs import tiny_models

    models = tiny_models(tiny_folder, names=("tiny",))
    engine = Engine(models, "cpu")
    history = await History.open(settings.data_dir)
    service = Service(settings, models, history, LocalQueue(engine))
    await service.start()
    events = Events()
    service.listen("console", events)
    try:
        started = time.monotonic()
        ticket = await service.submit(ALICE, "a warm cup --model tiny --seed 3 --steps 20", coffee)
        record = await events.done(ticket.job.id, timeout=240)
        elapsed = time.monotonic() - started
    finally:
        await service.close()
        await history.close()
        engine.close()
    assert record.status is Status.done
    shown = [event for event in events.of(ticket.job.id) if event.preview]
    assert shown, "at least one running event carries a preview"
    assert all(event.status is Status.running and 0 < event.step < event.total for event in shown)
    assert len(shown) <= 1 + elapsed / preview.INTERVAL  # throttled
    for event in shown:
        assert max(jpeg(event.preview).size) <= preview.MAX_SIDE
    plain = [e for e in events.of(ticket.job.id) if e.status is Status.running and e.total and not e.preview]
    assert plain, "the step progress still comes without previews"


async def test_a_preview_crosses_redis_as_bytes_to_the_bot(settings, redis_url, coffee):
    service = await build_service(replace(settings, redis_url=redis_url))  # no worker: we play it
    events = Events()
    service.listen("console", events)
    client = redis.asyncio.Redis.from_url(redis_url)
    picture = io.BytesIO()
    Image.new("RGB", (256, 160), (200, 120, 40)).save(picture, "JPEG", quality=70)
    try:
        ticket = await service.submit(ALICE, "warm", coffee)
        channel = events_channel(redis_settings(redis_url).database)
        await client.publish(channel, encode_event(Event(ticket.job.id, Status.running)))
        sent = Event(ticket.job.id, Status.running, step=2, total=8, preview=picture.getvalue())
        await client.publish(channel, encode_event(sent))
        heard = await events.until(lambda: [e for e in events.of(ticket.job.id) if e.preview], timeout=30)
    finally:
        await client.aclose()
        await close_service(service)
    assert heard[0] == sent and jpeg(heard[0].preview).size == (256, 160)
