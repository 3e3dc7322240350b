"""The creative actions through the queue in arq mode: the real service on ArqQueue, one real
`remixbot worker` process (serving every group) on real Redis, with a models.toml of its own."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot.actions import Button, Press
from bot.jobs import Origin, Status
from tests.conftest import REDIS_URL
from tests.integration.harness import ROOT, Events, stop, wait_for_worker

pytest.importorskip("diffusers")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

ALICE = Origin(platform="console", user_id="alice", chat_id="c1", user_name="Alice")

MODELS = """
[models.classic]
kind = "classic"
group = "classic"

[models.painterly]
kind = "classic"
group = "classic"
size = 480

[models.edit]
kind = "instruct-pix2pix"
source = "{pix2pix}"
group = "gpu"
num_inference_steps = 3
guidance_scale = 6.0
size = 64
"""


@pytest.fixture(scope="module")
def models_toml(tmp_path_factory) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.engine.tiny_pipelines import build_tiny_pix2pix

    folder = tmp_path_factory.mktemp("creative")
    pix2pix = build_tiny_pix2pix(folder / "pix2pix")
    path = folder / "models.toml"
    path.write_text(MODELS.format(pix2pix=pix2pix), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def redis_db():
    """The test Redis database, empty for this module (one worker serves all of its tests)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def worker(redis_db, models_toml, tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REMIXBOT_", "TELEGRAM_", "DISCORD_")) and k != "REDIS_URL"
    }
    env.update(
        REDIS_URL=redis_db,
        REMIXBOT_MODELS=str(models_toml),
        REMIXBOT_DATA_DIR=str(folder / "data"),
        REMIXBOT_DEVICE="cpu",
        REMIXBOT_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )  # tiny models on a shared runner: one torch thread is fastest
    log = open(folder / "worker.log", "w+")  # noqa: SIM115 - read back when the test fails
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_worker(redis_db, process)
        yield process
    finally:
        stop(process)
        log.seek(0)
        print(log.read()[-5000:])  # shown by pytest when a test failed
        log.close()


@pytest.fixture
async def service(settings, worker, redis_db, models_toml):
    service = await build_service(replace(settings, redis_url=redis_db, models_path=models_toml))
    yield service
    await close_service(service)


@pytest.fixture
def events(service) -> Events:
    events = Events()
    service.listen("console", events)
    return events


def read(name: str, images_dir: Path) -> bytes:
    return (images_dir / name).read_bytes()


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


async def test_animate_over_redis_returns_a_playable_mp4(service, events, images_dir, tmp_path):
    still = await events.done(
        (await service.submit(ALICE, "vivid --seed 4 --fps 12 --frames 30", read("coffee.png", images_dir))).job.id
    )
    ticket = await service.act(ALICE, Press(Button.animate, still.id, 0))
    clip = await events.done(ticket.job.id)
    assert clip.status is Status.done, clip.error
    (out,) = clip.outputs
    assert out.media_type == "video/mp4" and out.path.suffix == ".mp4"
    assert (out.width, out.height) == (600, 400)
    reader = imageio_ffmpeg.read_frames(str(out.path))
    meta = next(reader)
    frames = [np.frombuffer(frame, np.uint8).reshape(400, 600, 3) for frame in reader]
    assert len(frames) == 30 and meta["fps"] == 12  # the remix's --frames/--fps carried to the animation
    assert np.abs(frames[0].astype(int) - rgb(still.outputs[0].path)).mean() < 3.5  # starts on the still
    progress = [e for e in events.of(clip.id) if e.status is Status.running and e.total]
    assert progress and progress[-1].step == progress[-1].total


async def test_references_over_redis_move_the_colours_and_stay_with_rerolls(service, events, images_dir):
    references = (read("rocket.jpg", images_dir), read("chelsea.png", images_dir))
    coffee = read("coffee.png", images_dir)
    ticket = await service.submit(ALICE, "--seed 8 --strength 1", coffee, references)
    done = await events.done(ticket.job.id)
    rerolled = await events.done((await service.act(ALICE, f"reroll:{done.id}")).job.id)

    def ab(image: np.ndarray) -> np.ndarray:  # mean colour (a, b in Lab)
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3)[:, 1:].astype(float).mean(axis=0)

    def decoded(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    target = np.mean([ab(decoded(data)) for data in references], axis=0)
    source = ab(decoded(coffee))
    for record in (done, rerolled):
        assert record.status is Status.done, record.error
        distance = np.linalg.norm(ab(rgb(record.outputs[0].path)) - target)
        assert distance < 0.25 * np.linalg.norm(source - target)


async def test_an_instruction_edit_over_redis_repeats_with_its_seed(service, events, images_dir):
    photo = read("astronaut.png", images_dir)
    first = await service.submit(ALICE, "make the jacket red --model edit --seed 11 --image-cfg 1.2", photo)
    second = await service.submit(ALICE, "make the jacket red --model edit --seed 11 --image-cfg 1.2", photo)
    a, b = await events.done(first.job.id, timeout=120), await events.done(second.job.id, timeout=120)
    assert a.status is Status.done, a.error
    assert a.engine == "diffusers StableDiffusionInstructPix2PixPipeline"
    assert (a.outputs[0].width, a.outputs[0].height) == (64, 64)
    assert a.outputs[0].path.read_bytes() == b.outputs[0].path.read_bytes()


async def test_compare_and_before_after_over_redis(service, images_dir):
    events, sheets = Events(), []

    async def adapter(record, event):
        if event.status.finished and record.compare_of:
            sheet = await service.compare_sheet(record.compare_of)
            if sheet is not None:
                sheets.append(sheet)
        await events(record, event)

    service.listen("console", adapter)
    ticket = await service.submit(
        ALICE, "watercolor --seed 2 --compare painterly --show-source", read("coffee.png", images_dir)
    )
    records = [await events.done(job.id) for job in ticket.jobs]
    assert [r.status for r in records] == [Status.done, Status.done]
    assert len(sheets) == 1
    with Image.open(io.BytesIO(sheets[0])) as sheet:
        assert sheet.width == 480 + 480 + 3 * 12 and sheet.height > 320  # labelled under the pictures
    assert records[0].request.show_source
    with Image.open(io.BytesIO(await service.before_after(ALICE, records[1].id, 0))) as pair:
        assert pair.width == 480 + 480 + 3 * 12  # the 600x400 source at the 480x320 result's height
