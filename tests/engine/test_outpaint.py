"""Zoom out and pan: the classic fill (OpenCV), the layout's caps, and the buttons through the service."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot.actions import Button, button_id, derive_request, parse_button
from bot.jobs import Action, Origin, Request, Status
from bot.models import ModelEntry
from engine.kinds import classic, outpaint
from engine.work import Work
from tests.fixtures import IMAGES
from tests.integration.harness import Events

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    with Image.open(IMAGES / "coffee.png") as image:
        return image.convert("RGB").resize((240, 160), Image.Resampling.LANCZOS)


def inside(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(image)[box[1] : box[3], box[0] : box[2]]


@pytest.mark.parametrize(
    ("zoom", "pan", "canvas", "box"),
    [
        (2.0, None, (480, 320), (120, 80, 360, 240)),
        (1.5, None, (360, 240), (60, 40, 300, 200)),
        (None, "right", (360, 160), (0, 0, 240, 160)),
        (None, "left", (360, 160), (120, 0, 360, 160)),
        (None, "down", (240, 240), (0, 0, 240, 160)),
        (None, "up", (240, 240), (0, 80, 240, 240)),
    ],
)
def test_layout_places_the_picture(zoom, pan, canvas, box):
    plan = outpaint.layout((240, 160), zoom=zoom, pan=pan, max_side=1536)
    assert plan == outpaint.Layout(canvas=canvas, box=box)


def test_layout_keeps_within_the_cap_and_multiples():
    plan = outpaint.layout((1024, 1000), zoom=2.0, pan=None, max_side=1536)
    assert max(plan.canvas) <= 1536 and all(side % 8 == 0 for side in plan.canvas)
    left, top, right, bottom = plan.box
    assert right - left == 768 and bottom - top == 750  # the picture itself scaled down to fit
    odd = outpaint.layout((333, 201), zoom=1.5, pan=None, max_side=1536)
    assert all(side % 8 == 0 for side in odd.canvas)
    assert odd.box[2] - odd.box[0] == 333 and odd.box[3] - odd.box[1] == 201
    with pytest.raises(ValueError, match="zoom must be 1.5 or 2"):
        outpaint.layout((64, 64), zoom=3.0, pan=None, max_side=1536)
    with pytest.raises(ValueError, match="pan must be one of"):
        outpaint.layout((64, 64), zoom=None, pan="sideways", max_side=1536)


@pytest.mark.parametrize(("zoom", "pan"), [(2.0, None), (1.5, None), (None, "left"), (None, "up")])
def test_the_picture_stays_untouched_and_the_border_continues_it(photo, zoom, pan):
    plan = outpaint.layout(photo.size, zoom=zoom, pan=pan, max_side=1536)
    out = outpaint.extend(photo, zoom=zoom, pan=pan, max_side=1536)
    assert out.size == plan.canvas
    assert np.array_equal(inside(out, plan.box), np.asarray(photo))
    pixels = np.asarray(out).astype(float)
    border = np.ones(pixels.shape[:2], bool)
    left, top, right, bottom = plan.box
    border[top:bottom, left:right] = False
    # Filled, not black or flat: its colours are the picture's.
    assert pixels[border].std() > 5
    assert np.abs(pixels[border].mean(axis=0) - np.asarray(photo).reshape(-1, 3).mean(axis=0)).max() < 40
    # No seam: the ring just outside the picture is close to the picture's own edge.
    ring = np.zeros_like(border)
    ring[max(0, top - 2) : bottom + 2, max(0, left - 2) : right + 2] = True
    ring &= border
    edge = np.zeros_like(border)
    edge[top:bottom, left:right] = True
    edge[top + 2 : bottom - 2, left + 2 : right - 2] = False
    assert np.abs(pixels[ring].mean(axis=0) - pixels[edge].mean(axis=0)).max() < 15


def test_zoom_out_of_a_zoom_out_keeps_both(photo):
    first = outpaint.extend(photo, zoom=1.5, pan=None, max_side=1536)
    second = outpaint.extend(first, zoom=2.0, pan=None, max_side=1536)
    plan = outpaint.layout(first.size, zoom=2.0, pan=None, max_side=1536)
    assert np.array_equal(inside(second, plan.box), np.asarray(first))


def test_a_capped_zoom_scales_the_picture_once(photo):
    out = outpaint.extend(photo, zoom=2.0, pan=None, max_side=240)
    plan = outpaint.layout(photo.size, zoom=2.0, pan=None, max_side=240)
    assert max(out.size) <= 240
    expected = photo.resize((plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]), Image.Resampling.LANCZOS)
    assert np.array_equal(inside(out, plan.box), np.asarray(expected))


def test_the_classic_kind_runs_the_outpaint_action(photo):
    entry = ModelEntry(name="classic", kind="classic")
    work = Work(
        action=Action.outpaint,
        request=Request(prompt="", model="classic", strength=0.5, seed=1, pan="right", size=1536),
        entry=entry,
        image=photo,
        references=(),
        seeds=(1,),
        device="cpu",
    )
    calls = []
    images = classic.load(entry, "cpu").run(work, lambda step, total: calls.append((step, total)))
    assert images[0].size == (360, 160) and calls == [(1, 1)]


def test_the_buttons_ask_for_zoom_and_pan():
    parent = Request(prompt="a cup", model="fast", strength=0.6, num_images_per_prompt=4, size=512)
    for button, zoom, pan in (
        (Button.zoom15, 1.5, None),
        (Button.zoom2, 2.0, None),
        (Button.panleft, None, "left"),
        (Button.pandown, None, "down"),
    ):
        press = parse_button(button_id(button, "0123456789ab", 2))
        assert press is not None and press.button is button and press.index == 2
        assert button.action is Action.outpaint and button.takes_output
        request = derive_request(
            press, parent, seed=9, model="classic", vary_subtle=0.3, vary_strong=0.7, max_size=1536
        )
        assert (request.zoom, request.pan, request.size, request.num_images_per_prompt) == (zoom, pan, 1536, 1)
    # Another button made from an outpaint's request does not zoom again.
    zoomed = derive_request(
        parse_button(button_id(Button.zoom2, "0123456789ab", 0)), parent, seed=9, model=None, vary_subtle=0.3,
        vary_strong=0.7, max_size=1536,
    )  # fmt: skip
    vary = derive_request(
        parse_button(button_id(Button.vary, "0123456789ab", 0)), zoomed, seed=9, model=None, vary_subtle=0.3,
        vary_strong=0.7,
    )  # fmt: skip
    assert vary.zoom is None and vary.pan is None


async def test_zoom_out_and_pan_through_the_service_chain(settings, images_dir):
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(ALICE, "warm --size 256", (images_dir / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        zoomed = await events.done((await service.act(ALICE, button_id(Button.zoom2, parent.id, 0))).job.id)
        panned = await events.done((await service.act(ALICE, button_id(Button.panright, zoomed.id, 0))).job.id)
    finally:
        await close_service(service)
    for record in (zoomed, panned):
        assert record.status is Status.done, record.error
        assert record.engine == "classic"
    source = Image.open(io.BytesIO(parent.outputs[0].path.read_bytes()))
    first = Image.open(io.BytesIO(zoomed.outputs[0].path.read_bytes()))
    second = Image.open(io.BytesIO(panned.outputs[0].path.read_bytes()))
    plan = outpaint.layout(source.size, zoom=2.0, pan=None, max_side=settings.limits.max_size)
    assert first.size == plan.canvas
    assert np.array_equal(inside(first, plan.box), np.asarray(source.convert("RGB")))
    plan = outpaint.layout(first.size, zoom=None, pan="right", max_side=settings.limits.max_size)
    assert second.size == plan.canvas
    assert np.array_equal(inside(second, plan.box), np.asarray(first.convert("RGB")))
