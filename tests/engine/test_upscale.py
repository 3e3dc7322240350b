"""Upscale: the upscale-spandrel kind on a random Real-ESRGAN Compact, and the classic fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("spandrel")

from adapters.cli import build_service, close_service  # noqa: E402
from bot.actions import Button, button_id  # noqa: E402
from bot.jobs import Action, JobCancelled, Origin, Request, Status  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import classic, upscale  # noqa: E402
from engine.work import UserFacingError, Work  # noqa: E402
from tests.engine.tiny_spandrel import build_compact  # noqa: E402
from tests.fixtures import IMAGES  # noqa: E402
from tests.integration.harness import ROOT, Events  # noqa: E402

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> Path:
    return build_compact(tmp_path_factory.mktemp("weights") / "realesr-tiny-x4.pth")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 110×80 piece of a real photo: 2 × 3 tiles at tile = 64, overlap = 8, quick on a CPU."""
    return Image.open(IMAGES / "coffee.png").convert("RGB").crop((220, 130, 330, 210))


def entry_for(path: Path, **options) -> ModelEntry:
    return ModelEntry(name="x4", kind="upscale-spandrel", source=str(path), options=options)


def work_for(entry: ModelEntry, image: Image.Image, scale: int | None) -> Work:
    request = Request(prompt="", model=entry.name, strength=0.5, scale=scale)
    return Work(
        action=Action.upscale, request=request, entry=entry, image=image, references=(), seeds=(3,), device="cpu"
    )


def upscaled(entry: ModelEntry, image: Image.Image, scale: int | None) -> tuple[np.ndarray, list, Work]:
    steps: list[tuple[int, int]] = []
    work = work_for(entry, image, scale)
    [out] = upscale.load(entry, "cpu").run(work, lambda step, total: steps.append((step, total)))
    return np.asarray(out), steps, work


def test_spandrel_detects_the_compact_realesrgan_from_its_keys(compact):
    entry = entry_for(compact)
    assert upscale.check(entry) is None
    model = upscale.load(entry, "cpu")
    assert model.descriptor.architecture.name == "RealESRGAN Compact"
    assert model.descriptor.scale == 4
    assert model.label == "spandrel RealESRGAN Compact ×4"


@pytest.mark.parametrize("scale", [4, 2])
def test_tiles_with_enough_overlap_give_the_untiled_result(compact, photo, scale):
    whole, whole_steps, _ = upscaled(entry_for(compact, tile=4096), photo, scale)
    tiled, steps, work = upscaled(entry_for(compact, tile=64, overlap=8), photo, scale)
    seams, _, _ = upscaled(entry_for(compact, tile=64, overlap=0), photo, scale)

    assert whole.shape == tiled.shape == (80 * scale, 110 * scale, 3)
    assert whole_steps == [(1, 1)]
    assert steps == [(i, 6) for i in range(1, 7)]  # 2 rows × 3 columns of tiles, one step each
    difference = np.abs(whole.astype(int) - tiled.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4  # float rounding at most
    seam = np.abs(whole.astype(int) - seams.astype(int))  # the same tiles without context: seams show
    assert seam.max() > 4 and (seam > 0).mean() > 0.01
    assert work.notes == ([] if scale == 4 else ["×4 model, resized to ×2"])


def test_the_model_really_upscales(compact, photo):
    out, _, _ = upscaled(entry_for(compact), photo, 4)
    lanczos = np.asarray(photo.resize((440, 320), Image.Resampling.LANCZOS))
    assert 1.0 < np.abs(out.astype(int) - lanczos.astype(int)).mean() < 40  # its own result, still the photo


def test_a_cancelled_upscale_stops_between_tiles(compact, photo):
    seen = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        if step == 3:
            raise JobCancelled("job")

    entry = entry_for(compact, tile=64, overlap=8)
    with pytest.raises(JobCancelled):
        upscale.load(entry, "cpu").run(work_for(entry, photo, 4), progress)
    assert seen == [1, 2, 3]  # of 6 tiles


def test_an_output_past_max_side_is_refused_with_its_size(compact, photo):
    big = photo.resize((600, 400))
    with pytest.raises(UserFacingError, match="That would be 2400 px wide; the limit is 2000 px"):
        entry = entry_for(compact, max_side=2000)
        upscale.load(entry, "cpu").run(work_for(entry, big, 4), print)
    tall = ModelEntry(name="classic", kind="classic", options={"max_side": 1000})
    with pytest.raises(UserFacingError, match="That would be 2400 px tall; the limit is 1000 px"):
        classic.load(tall, "cpu").run(work_for(tall, big.rotate(90, expand=True), 4), print)


def test_check_says_what_is_missing_without_importing_torch(tmp_path, compact):
    script = f"""
import json, sys
from bot.models import ModelEntry
from engine.kinds import face_restore, upscale
def entry(kind, **options):
    source = options.pop("source", "")
    return ModelEntry(name="m", kind=kind, source=source, options=options)
print(json.dumps([
    upscale.check(entry("upscale-spandrel", source="{tmp_path / "RealESRGAN_x4plus.pth"}")),
    upscale.check(entry("upscale-spandrel")),
    upscale.check(entry("upscale-spandrel", source="{compact}", tile=100, overlap=45)),
    upscale.check(entry("upscale-spandrel", source="{compact}", dtype="int8")),
    upscale.check(entry("upscale-spandrel", source="{compact}")),
    face_restore.check(entry("face-restore")),
    face_restore.check(entry("face-restore", source="{tmp_path / "GFPGANv1.4.pth"}")),
    face_restore.check(entry("face-restore", inpaint_model="fast", yunet="{tmp_path / "yunet.onnx"}")),
    face_restore.check(entry("face-restore", inpaint_model="fast", denoise=3)),
    face_restore.check(entry("face-restore", inpaint_model="fast")),
]))
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    reasons = json.loads(lines[0])
    assert reasons[0] == f"needs weights: {tmp_path / 'RealESRGAN_x4plus.pth'} not found"
    assert reasons[1].startswith("misconfigured: m needs source")
    assert "overlap = 45 leaves no room in tile = 100" in reasons[2]
    assert "unknown dtype 'int8'" in reasons[3]
    assert reasons[4] is None
    assert "needs source" in reasons[5] and "inpaint_model" in reasons[5]
    assert reasons[6] == f"needs weights: {tmp_path / 'GFPGANv1.4.pth'} not found"
    assert reasons[7].startswith("needs weights:") and "YuNet" in reasons[7]
    assert reasons[8].startswith("misconfigured: denoise = 3")
    assert reasons[9] is None
    assert lines[1] == "False"


async def test_the_classic_upscale_is_labelled_classic(settings, images_dir):
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(ALICE, "warm", (images_dir / "coffee.png").read_bytes())
        parent = await events.done(ticket.job.id)
        ticket = await service.act(ALICE, button_id(Button.upscale, parent.id, 0))
        record = await events.done(ticket.job.id)
    finally:
        await close_service(service)
    assert record.status is Status.done, record.error
    assert record.engine == "classic" and record.note == "classic ×2: Lanczos resize and sharpening"
    assert (record.outputs[0].width, record.outputs[0].height) == (
        2 * parent.outputs[0].width,
        2 * parent.outputs[0].height,
    )


def test_a_tiled_1024px_x4_upscale_stays_within_its_memory_bound(compact):
    """The figure in the report: peak RSS a tiled 1024² ×4 upscale adds, in a fresh process."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset the peak RSS")
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "upscale_memory.py"),
        "--child",
        "tiled",
        "--model",
        str(compact),
        "--size",
        "1024",
        "--scale",
        "4",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["output"] == "4096x4096"
    # the 4096² output alone is 64 MiB (PIL keeps RGB in 4 bytes a pixel); the untiled run adds ~600 MiB
    assert row["peak_mib"] < 400, row


def test_a_file_that_is_not_model_weights_fails_with_a_reason(tmp_path):
    import torch

    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a checkpoint")
    stranger = tmp_path / "stranger.pth"
    torch.save({"params": {"some.weight": torch.zeros(3)}}, stranger)
    with pytest.raises(UserFacingError, match="damaged.pth could not be loaded"):
        upscale.load(entry_for(damaged), "cpu")
    with pytest.raises(UserFacingError, match="stranger.pth is not a model spandrel knows"):
        upscale.load(entry_for(stranger), "cpu")


def test_tile_spans_and_factors(compact):
    assert upscale.spans(100, 64, 8) == [(0, 33), (33, 67), (67, 100)]  # cores of at most 64 - 2 × 8
    assert upscale.spans(64, 64, 8) == [(0, 64)]
    assert upscale.factor_of(None) == 2
    with pytest.raises(UserFacingError, match="must be 2 or 4"):
        upscale.factor_of(16)
    assert "tile = 32" in upscale.check(entry_for(compact, tile=32))
