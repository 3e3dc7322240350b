"""Zoom out and pan with a diffusers model: the tiny SD's inpainting twin redraws the new border."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bot.jobs import Action, Request  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import img2img, outpaint  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.fixtures import IMAGES  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def work_for(entry: ModelEntry, image: Image.Image, seeds=(4,), **request) -> Work:
    return Work(
        action=Action.outpaint,
        request=Request(prompt="a (cup:1.2) of coffee", model="tiny", strength=0.6, seed=seeds[0], **request),
        entry=entry,
        image=image,
        references=(),
        seeds=tuple(seeds),
        device="cpu",
    )


def test_the_border_is_redrawn_and_the_picture_kept(entry):
    model = img2img.load(entry, "cpu")
    with Image.open(IMAGES / "coffee.png") as image:
        photo = image.convert("RGB").resize((48, 32), Image.Resampling.LANCZOS)
    work = work_for(entry, photo, seeds=(4, 5), zoom=2.0, size=1536)
    calls = []
    images = model.run(work, lambda step, total: calls.append((step, total)))
    plan = outpaint.layout(photo.size, zoom=2.0, pan=None, max_side=1536)
    classic = np.asarray(outpaint.extend(photo, zoom=2.0, pan=None, max_side=1536)).astype(int)
    assert len(images) == 2 and calls and calls[-1][0] == calls[-1][1]
    left, top, right, bottom = plan.box
    for out in images:
        assert out.size == plan.canvas == (96, 64)
        pixels = np.asarray(out).astype(int)
        assert np.array_equal(pixels[top:bottom, left:right], np.asarray(photo))
        assert np.abs(pixels[:8] - classic[:8]).max() > 10  # the model redrew the border
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))  # one seed each
    again = model.run(work_for(entry, photo, seeds=(4,), zoom=2.0, size=1536), lambda s, t: None)[0]
    # A seed's output does not depend on what it ran with (up to batching noise).
    assert np.abs(np.asarray(again).astype(int) - np.asarray(images[0]).astype(int)).max() <= 2
    # An outpaint never shares a batch.
    assert model.batch_key(work) != model.batch_key(work_for(entry, photo, seeds=(4, 5), zoom=2.0, size=1536))
