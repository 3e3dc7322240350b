"""--size above the render cap (``--size 2k``): rendered at the model's size, then upscaled by the best
upscaler that runs here (Real-ESRGAN when its weights are in place, else classic Lanczos)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot.actions import Button, button_id
from bot.jobs import Action, Job, Origin, Request, Status
from bot.models import parse_models
from bot.settings import Limits
from engine.runner import Engine
from tests.fixtures import IMAGES
from tests.integration.harness import Events

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


def png(size: tuple[int, int]) -> bytes:
    with Image.open(IMAGES / "coffee.png") as image:
        out = io.BytesIO()
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, format="PNG")
        return out.getvalue()


def remix(size: int | None, source: tuple[int, int] = (300, 200), model: str = "classic") -> Job:
    request = Request(prompt="warm", model=model, strength=0.6, seed=5, size=size)
    return Job(id="0123456789ab", action=Action.remix, request=request, image=png(source), origin=ALICE)


def _mean(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L"), np.float64).mean())


def ran(engine: Engine, job: Job) -> tuple[Image.Image, str, str]:
    result = engine.run_sync(job, lambda step, total: None)
    assert result.status is Status.done, result.error
    return Image.open(io.BytesIO(result.outputs[0].data)), result.note, result.engine


def test_a_size_above_the_render_cap_is_rendered_then_upscaled_with_lanczos():
    engine = Engine(parse_models('[models.classic]\nkind = "classic"\nsize = 256\n'), "cpu", max_render=256)
    try:
        small = ran(engine, remix(None))[0]  # the model's own size
        big, note, label = ran(engine, remix(1024))
        assert small.size == (256, 168) and big.size == (1024, 672) and label == "classic"
        assert note == "rendered at 256 px, upscaled to 1024 px (classic)"
        # the upscale is of the rendered picture (×4 Lanczos and sharpening), not a render at 1024
        assert abs(_mean(big.resize(small.size, Image.Resampling.BOX)) - _mean(small)) < 3
        native, note, _ = ran(engine, remix(200))  # within the cap: rendered at that size, as always
        assert native.size == (200, 136) and note == ""
    finally:
        engine.close()


def test_the_upscale_buttons_first_runnable_model_does_it(tmp_path):
    pytest.importorskip("spandrel")
    from tests.engine.tiny_spandrel import build_compact

    weights = build_compact(tmp_path / "tiny-x4.pth")
    toml = f"""
[defaults]
upscale = ["missing", "x4", "classic"]
[models.classic]
kind = "classic"
size = 128
[models.missing]
kind = "upscale-spandrel"
source = "{tmp_path / "not-there.pth"}"
[models.x4]
kind = "upscale-spandrel"
source = "{weights}"
"""
    engine = Engine(parse_models(toml), "cpu", max_render=128)
    try:
        big, note, _ = ran(engine, remix(500, source=(160, 120)))
    finally:
        engine.close()
    assert big.size == (500, 375)
    assert note.startswith("rendered at 128 px, upscaled to 500 px (spandrel") and "×4" in note


async def test_size_2k_through_the_service_and_its_derived_jobs(settings, images_dir):
    settings = replace(settings, limits=replace(settings.limits, max_size=512, max_output_size=2048))
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(ALICE, "warm --size 2k", (images_dir / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        vary = await events.done((await service.act(ALICE, button_id(Button.vary, parent.id, 0))).job.id)
        service.settings = replace(settings, limits=replace(settings.limits, max_output_size=1024))
        capped = await events.done((await service.act(ALICE, button_id(Button.reroll, parent.id))).job.id)
    finally:
        await close_service(service)
    for record in (parent, vary, capped):
        assert record.status is Status.done, record.error
    assert max(parent.outputs[0].width, parent.outputs[0].height) == 2048
    assert "upscaled to 2048 px" in parent.note
    assert max(vary.outputs[0].width, vary.outputs[0].height) == 2048  # a variation keeps the size asked for
    # the operator lowered the cap since: a job derived from the old result keeps to the new one
    assert capped.request.size == 1024 and max(capped.outputs[0].width, capped.outputs[0].height) == 1024


def test_the_engine_takes_its_render_cap_from_the_limits(settings):
    engine = Engine.from_settings(parse_models(""), replace(settings, limits=Limits(max_size=640)))
    try:
        assert engine.max_render == 640
    finally:
        engine.close()


async def test_a_servers_size_cap_holds_on_zoom_outs_and_on_jobs_made_from_bigger_results(settings, images_dir):
    server = Origin(platform="discord", user_id="7", chat_id="70", guild_id="700")
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("discord", events)
        ticket = await service.submit(server, "warm --size 2k", (images_dir / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        await service.change_rules(server, max_size=512)  # the server's admins cap --size afterwards
        zoomed = await events.done((await service.act(server, button_id(Button.zoom2, parent.id, 0))).job.id)
        vary = await events.done((await service.act(server, button_id(Button.vary, parent.id, 0))).job.id)
    finally:
        await close_service(service)
    assert max(parent.outputs[0].width, parent.outputs[0].height) == 2048
    assert zoomed.status is Status.done and vary.status is Status.done, (zoomed.error, vary.error)
    assert zoomed.request.size == 512 and max(zoomed.outputs[0].width, zoomed.outputs[0].height) <= 512
    assert vary.request.size == 512 and max(vary.outputs[0].width, vary.outputs[0].height) == 512
