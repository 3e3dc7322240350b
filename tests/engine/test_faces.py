"""Fix face: detection, the feathered paste that leaves the rest untouched, the classic retouch, spandrel
face models (a random full-size GFPGAN, a 1× restoration model), the ADetailer-style redraw with an
img2img model, and Upscale + Fix face pressed on a result through Redis and a real worker."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("spandrel")

from adapters.cli import build_service, close_service  # noqa: E402
from bot.actions import Button, button_id  # noqa: E402
from bot.jobs import Action, Origin, Request, Status  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import classic, face_restore, faces  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_spandrel import build_compact, build_gfpgan  # noqa: E402
from tests.fixtures import IMAGES  # noqa: E402
from tests.integration.harness import ROOT, Events, start_worker, stop, wait_for_worker  # noqa: E402

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(IMAGES / "astronaut.png").convert("RGB")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


def work_for(entry: ModelEntry, image: Image.Image, seeds: tuple[int, ...] = (5,)) -> Work:
    request = Request(prompt="a portrait", model=entry.name, strength=0.5)
    return Work(
        action=Action.fixface, request=request, entry=entry, image=image, references=(), seeds=seeds, device="cpu"
    )


def outside(image: Image.Image, found: list[faces.Face]) -> np.ndarray:
    """The pixels outside every face's region (box + feather margin)."""
    pixels = np.asarray(image)
    keep = np.ones(pixels.shape[:2], bool)
    for face in found:
        x0, y0, x1, y1 = face.region
        keep[y0:y1, x0:x1] = False
    return pixels[keep]


def inside_change(before: Image.Image, after: Image.Image, face: faces.Face) -> float:
    x0, y0, x1, y1 = face.box
    return float(np.abs(np.asarray(before, int)[y0:y1, x0:x1] - np.asarray(after, int)[y0:y1, x0:x1]).mean())


def assert_only_faces_changed(before: Image.Image, after: Image.Image, least_change: float = 1.0) -> None:
    found = faces.find_faces(before)
    assert after.size == before.size and found
    assert np.array_equal(outside(before, found), outside(after, found))  # byte-identical
    assert inside_change(before, after, found[0]) > least_change


def test_haar_finds_the_astronauts_face_and_none_in_the_coffee(astronaut):
    [face] = faces.find_faces(astronaut)
    x0, y0, x1, y1 = face.box
    assert 190 < (x0 + x1) / 2 < 260 and 80 < (y0 + y1) / 2 < 150  # her face, not the flag or the suit
    assert 60 < x1 - x0 < 160
    rx0, ry0, rx1, ry1 = face.region
    cx0, cy0, cx1, cy1 = face.crop
    assert cx0 <= rx0 <= x0 and cy0 <= ry0 <= y0 and x1 <= rx1 <= cx1 and y1 <= ry1 <= cy1
    for name in ("coffee.png", "chelsea.png"):  # a cup; a cat
        assert faces.find_faces(Image.open(IMAGES / name)) == []


def test_the_feather_mask_is_one_on_the_face_and_fades_out_to_the_region_edge():
    face = faces.face_at((40, 40, 80, 80), 200, 200)
    assert face.region == (30, 30, 90, 90)
    mask = faces.feather_mask(face, 200, 200)
    assert mask.shape == (60, 60)
    assert np.all(mask[10:50, 10:50] == 1.0)
    assert mask[0].max() < 0.01 and mask[:, -1].max() < 0.01 and mask[30, 5] < mask[30, 9] < 1.0
    corner = faces.face_at((0, 0, 40, 40), 200, 200)  # cut by the frame: restored up to the image edge
    edge = faces.feather_mask(corner, 200, 200)
    assert edge[0, 0] == 1.0 and edge[-1, 0] < 0.01


def test_classic_fix_face_retouches_the_face_and_nothing_else(astronaut):
    entry = ModelEntry(name="classic", kind="classic")
    work = work_for(entry, astronaut)
    [fixed] = classic.load(entry, "cpu").run(work, lambda step, total: None)
    assert_only_faces_changed(astronaut, fixed)
    assert work.notes == ["1 face fixed (classic retouch)"]
    [again] = classic.load(entry, "cpu").run(work_for(entry, astronaut), lambda step, total: None)
    assert again.tobytes() == fixed.tobytes()


def test_the_classic_fix_face_never_imports_torch():
    script = f"""
import sys
from PIL import Image
from bot.jobs import Action, Request
from bot.models import ModelEntry
from engine.kinds import classic
from engine.work import Work
entry = ModelEntry(name="classic", kind="classic")
work = Work(action=Action.fixface, request=Request(prompt="", model="classic", strength=0.5), entry=entry,
            image=Image.open({str(IMAGES / "astronaut.png")!r}).convert("RGB"), references=(), seeds=(1,),
            device="cpu")
classic.load(entry, "cpu").run(work, lambda step, total: None)
print(work.notes, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['1 face fixed (classic retouch)'] False"


async def test_no_face_found_is_an_answer_with_the_image_unchanged(settings):
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(ALICE, "warm", (IMAGES / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        ticket = await service.act(ALICE, button_id(Button.fixface, parent.id, 0))
        record = await events.done(ticket.job.id)
    finally:
        await close_service(service)
    assert record.status is Status.done, record.error
    assert record.engine == "classic" and record.note == "no face found"
    with Image.open(parent.outputs[0].path) as before, Image.open(record.outputs[0].path) as after:
        assert before.convert("RGB").tobytes() == after.convert("RGB").tobytes()


def test_a_random_gfpgan_restores_the_face_and_pastes_it_back(weights_dir, astronaut):
    """Full size (spandrel hard-codes GFPGAN's 512 px, 86 M parameters): the slowest test here."""
    path = build_gfpgan(weights_dir / "GFPGANv1.4.pth")
    entry = ModelEntry(name="gfpgan", kind="face-restore", source=str(path))
    assert face_restore.check(entry) is None
    model = face_restore.load(entry, "cpu")
    assert model.label == "spandrel GFPGAN"
    work = work_for(entry, astronaut)
    [fixed] = model.run(work, lambda step, total: None)
    assert_only_faces_changed(astronaut, fixed, least_change=10.0)  # random weights: a different face
    assert work.notes == ["1 face fixed"]


def test_a_1x_restoration_model_works_as_a_face_restorer(weights_dir, astronaut):
    path = build_compact(weights_dir / "restore-1x.pth", scale=1)
    entry = ModelEntry(name="restore", kind="face-restore", source=str(path))
    model = face_restore.load(entry, "cpu")
    assert model.label == "spandrel RealESRGAN Compact"
    steps = []
    work = work_for(entry, astronaut, seeds=(1, 2))
    first, second = model.run(work, lambda step, total: steps.append((step, total)))
    assert_only_faces_changed(astronaut, first)
    assert first.tobytes() == second.tobytes()  # no randomness in this one
    assert steps == [(1, 2), (2, 2)]


async def test_the_inpaint_model_redraws_each_face_through_the_engine(settings, tmp_path, astronaut):
    pytest.importorskip("diffusers")
    from tests.engine.tiny_models import build_tiny_sd

    tiny = build_tiny_sd(tmp_path / "tiny-sd")
    models = tmp_path / "models.toml"
    models.write_text(f"""
[defaults]
fixface = "faces"

[models.tiny]
kind = "diffusers-img2img"
source = "{tiny}"
group = "gpu"
num_inference_steps = 5
guidance_scale = 1.0
size = 64

[models.faces]
kind = "face-restore"
inpaint_model = "tiny"
group = "gpu"
face_size = 64
denoise = 0.6
""")
    service = await build_service(replace(settings, models_path=models, device="cpu"))
    try:
        events = Events()
        service.listen("console", events)
        photo = (IMAGES / "astronaut.png").read_bytes()
        ticket = await service.submit(ALICE, "--strength 0", photo)  # classic at strength 0: the photo back
        parent = await events.done(ticket.job.id)
        ticket = await service.act(ALICE, button_id(Button.fixface, parent.id, 0))
        record = await events.done(ticket.job.id)
    finally:
        await close_service(service)
    assert record.status is Status.done, record.error
    assert record.engine == "faces redrawn by tiny" and record.note == "1 face fixed (redrawn with tiny)"
    with Image.open(record.outputs[0].path) as after:
        assert_only_faces_changed(astronaut, after.convert("RGB"), least_change=5.0)
    steps = [event for event in events.of(record.id) if event.status is Status.running and event.total]
    assert steps[-1].step == steps[-1].total == 3  # int(5 steps × 0.6): the inpaint model's own progress


async def test_upscale_and_fix_face_pressed_on_a_result_run_on_a_worker(
    settings, redis_url, env, tmp_path, weights_dir
):
    x4 = build_compact(weights_dir / "realesr-tiny-x4.pth")
    restorer = build_compact(weights_dir / "restore-1x-arq.pth", scale=1, seed=1)
    models = tmp_path / "models.toml"
    models.write_text(f"""
[defaults]
upscale = "x4"
fixface = "restore"

[models.x4]
kind = "upscale-spandrel"
source = "{x4}"
tile = 160
overlap = 16

[models.restore]
kind = "face-restore"
source = "{restorer}"
""")
    worker = start_worker(redis_url, dict(env, REMIXBOT_MODELS=str(models), REMIXBOT_DEVICE="cpu"))
    service = None
    try:
        wait_for_worker(redis_url, worker)
        service = await build_service(replace(settings, redis_url=redis_url, models_path=models))
        events = Events()
        service.listen("console", events)
        photo = (IMAGES / "astronaut.png").read_bytes()
        ticket = await service.submit(ALICE, "--strength 0 --size 320", photo)  # the photo, at 320 px
        parent = await events.done(ticket.job.id)
        assert parent.status is Status.done, parent.error
        big = await service.act(ALICE, button_id(Button.upscale, parent.id, 0))
        fixed = await service.act(ALICE, button_id(Button.fixface, parent.id, 0))
        upscaled, restored = await events.done(big.job.id), await events.done(fixed.job.id)
    finally:
        if service is not None:
            await close_service(service)
        log = stop(worker)
    assert upscaled.status is Status.done, (upscaled.error, log)
    assert upscaled.engine == "spandrel RealESRGAN Compact ×4" and upscaled.note == "×4 model, resized to ×2"
    assert (upscaled.outputs[0].width, upscaled.outputs[0].height) == (640, 640)
    tiles = [e for e in events.of(upscaled.id) if e.status is Status.running and e.total]
    assert tiles[-1].step == tiles[-1].total == 9  # 320 px in cores of at most 160 - 2 × 16: 3 × 3 tiles
    assert restored.status is Status.done, (restored.error, log)
    assert restored.engine == "spandrel RealESRGAN Compact" and restored.note == "1 face fixed"
    with Image.open(parent.outputs[0].path) as before, Image.open(restored.outputs[0].path) as after:
        assert_only_faces_changed(before.convert("RGB"), after.convert("RGB"))
