"""The console's words for the ➕ More buttons: ``zoom N 1.5|2``, ``pan N left|right|up|down``, ``cutout N``."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from adapters.console import Console
from bot.jobs import Action, Status
from bot.service import CUTOUT_MISSING
from engine.kinds import outpaint


@pytest.fixture
async def service(settings):
    made = await build_service(settings)
    yield made
    await close_service(made)


async def chat(service, text: str, user: str = "alice") -> str:
    out = io.StringIO()
    await Console(service, user=user, stdin=io.StringIO(text), stdout=out).run()
    return out.getvalue()


def queued(text: str) -> list[str]:
    return re.findall(r"queued ([0-9a-f]{12})", text)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


async def test_zoom_and_pan_chain_from_the_console(service, images_dir):
    said = await chat(service, f"{images_dir / 'coffee.png'} warm --size 256\n")
    (first,) = queued(said)
    assert "zoom N 1.5|2 · pan N left|right|up|down" in said and "cutout 1" in said
    said = await chat(service, f"zoom 1 2 {first}\n")
    (zoom_id,) = queued(said)
    assert f"(zoom2 of {first})" in said
    said = await chat(service, f"zoom 1.5x {zoom_id}\npan 1 left {zoom_id}\n")
    again_id, pan_id = queued(said)
    history = service.history
    parent, zoomed = await history.job(first), await history.job(zoom_id)
    again, panned = await history.job(again_id), await history.job(pan_id)
    for record, source, zoom, pan in (
        (zoomed, parent, 2.0, None),
        (again, zoomed, 1.5, None),
        (panned, zoomed, None, "left"),
    ):
        assert record.status is Status.done and record.action is Action.outpaint, record.error
        assert record.parent_job == source.id and (record.request.zoom, record.request.pan) == (zoom, pan)
        inner = pixels(source.outputs[0].path)
        plan = outpaint.layout((inner.shape[1], inner.shape[0]), zoom=zoom, pan=pan, max_side=1536)
        left, top, right, bottom = plan.box
        assert np.array_equal(pixels(record.outputs[0].path)[top:bottom, left:right], inner)


async def test_console_refusals_are_friendly(service, images_dir):
    (first,) = queued(await chat(service, f"{images_dir / 'coffee.png'} warm --size 128\n"))
    said = await chat(service, f"zoom 1 3 {first}\npan 1 sideways {first}\ncutout 1 {first}\n")
    assert "sorry: say how: zoom N 1.5 or zoom N 2" in said
    assert "sorry: say how: pan N left, right, up or down" in said
    assert f"sorry: {CUTOUT_MISSING}" in said  # the registry's cutout entry, its weights not installed
    # someone else's console cannot press alice's result
    assert "sorry: That result isn't available here." in await chat(service, f"pan 1 up {first}\n", user="bob")
