"""Compare sheets and before/after: the real service in embedded mode, the console, and `remixbot remix`."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from adapters.console import Console
from bot import sheets
from bot.actions import Button, Press
from bot.jobs import Origin, Status
from bot.service import Refusal
from tests.integration.harness import ROOT, Events

ALICE = Origin(platform="console", user_id="alice", chat_id="c1", user_name="Alice")

# classic twice under two names and working sizes (both run here), and a model whose weights look
# present (so it is queued) but are broken (so its job fails)
MODELS = """
[models.classic]
kind = "classic"
group = "classic"
size = 1024

[models.painterly]
kind = "classic"
description = "the classic kind again, under another name"
group = "classic"
size = 480

[models.missing]
kind = "diffusers-img2img"
source = "{nowhere}"
"""


def write_models(folder: Path) -> Path:
    (folder / "nowhere").mkdir(exist_ok=True)
    (folder / "nowhere" / "model_index.json").write_text("{}", encoding="utf-8")
    path = folder / "models.toml"
    path.write_text(MODELS.format(nowhere=folder / "nowhere"), encoding="utf-8")
    return path


@pytest.fixture
def models_toml(tmp_path) -> Path:
    return write_models(tmp_path)


@pytest.fixture
async def service(settings, models_toml):
    service = await build_service(replace(settings, models_path=models_toml, device="cpu"))
    yield service
    await close_service(service)


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()


def png(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size and image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image).astype(int)


def columns_of(sheet: np.ndarray, widths: list[int], height: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(picture, label strip) of each column of a sheet whose pictures are ``height`` px high."""
    found, x = [], sheets.GAP
    for width in widths:
        found.append(
            (sheet[sheets.GAP : sheets.GAP + height, x : x + width], sheet[2 * sheets.GAP + height :, x : x + width])
        )
        x += width + sheets.GAP
    return found


def has_label(strip: np.ndarray) -> bool:
    """Light text on the sheet's dark background."""
    return int((strip.min(axis=2) > 200).sum()) > 40


async def test_a_comparison_gives_one_labelled_sheet_to_exactly_one_completion(service, coffee):
    events, handed_out = Events(), []

    async def adapter(record, event):  # what a platform adapter does on every event
        if event.status.finished and record.compare_of:
            sheet = await service.compare_sheet(record.compare_of)
            if sheet is not None:
                handed_out.append((record.id, sheet))
        await events(record, event)  # last: the test goes on once the event is fully handled

    service.listen("console", adapter)
    ticket = await service.submit(ALICE, "warm --seed 3 --compare painterly,missing", coffee)
    ids = [job.id for job in ticket.jobs]
    records = [await events.done(job_id) for job_id in ids]
    assert [r.compare_of for r in records] == [ids[0]] * 3
    assert [r.status for r in records] == [Status.done, Status.done, Status.failed]
    assert len(handed_out) == 1  # the three completions, one sheet
    assert [(r.outputs[0].width, r.request.seed) for r in records[:2]] == [(600, 3), (480, 3)]
    sheet = png(handed_out[0][1])
    # the 600x400 and 480x320 results at the smaller one's height, then a failure tile
    assert sheet.shape[1] == 480 + 480 + 240 + 4 * sheets.GAP
    (classic, classic_label), (painterly, painterly_label), (failed, failed_label) = columns_of(
        sheet, [480, 480, 240], 320
    )
    assert np.abs(classic - png(records[0].outputs[0].path.read_bytes(), (480, 320))).mean() < 2
    assert np.abs(painterly - png(records[1].outputs[0].path.read_bytes())).mean() < 1
    assert has_label(classic_label) and has_label(painterly_label) and has_label(failed_label)
    assert int((np.abs(failed - sheets.MUTED).sum(axis=2) < 60).sum()) > 40  # why it failed, in place
    assert await service.compare_sheet(ids[2]) is None  # handed out already
    assert await service.compare_sheet(ids[2], again=True) == handed_out[0][1]  # unless asked again
    single = await events.done((await service.submit(ALICE, "warm", coffee)).job.id)
    assert single.compare_of is None and await service.compare_sheet(single.id) is None


async def test_before_after_puts_the_source_next_to_a_result(service, coffee, images_dir):
    events = Events()
    service.listen("console", events)
    done = await events.done((await service.submit(ALICE, "noir --seed 1", coffee)).job.id)
    sheet = png(await service.before_after(ALICE, done.id, 0))
    (before, before_label), (after, after_label) = columns_of(sheet, [600, 600], 400)
    assert np.abs(before - png(coffee)).mean() < 1
    assert np.abs(after - png(done.outputs[0].path.read_bytes())).mean() < 1
    assert has_label(before_label) and has_label(after_label)
    with pytest.raises(Refusal, match="no such image"):
        await service.before_after(ALICE, done.id, 3)
    with pytest.raises(Refusal, match="isn.t available here"):
        await service.before_after(ALICE, "0123456789ab", 0)
    with pytest.raises(Refusal, match="doesn't start a new job"):
        await service.act(ALICE, Press(Button.source, done.id, 0))
    clip = await events.done((await service.act(ALICE, Press(Button.animate, done.id, 0))).job.id)
    assert clip.status is Status.done and clip.outputs[0].media_type == "video/mp4"
    with pytest.raises(Refusal, match="images only"):
        await service.before_after(ALICE, clip.id, 0)


async def test_the_console_prints_the_sheets_and_answers_source(service, images_dir):
    photo = images_dir / "coffee.png"
    script = io.StringIO(f"{photo} vivid --seed 2 --compare painterly --show-source\n")
    out = io.StringIO()
    await Console(service, user="alice", stdin=script, stdout=out).run()
    text = out.getvalue()
    lines = [line for line in text.splitlines() if "compare sheet: " in line]
    assert len(lines) == 1 and Path(lines[0].split("compare sheet: ")[1]).is_file()
    befores = [line.split("before/after: ")[1] for line in text.splitlines() if "before/after: " in line]
    assert len(befores) == 2 and all(Path(path).is_file() for path in befores)
    assert "source 1" in text  # offered with every result
    first = text.split("queued ")[1].split()[0]
    out = io.StringIO()
    await Console(service, user="alice", stdin=io.StringIO(f"source 1 {first}\nsource 3 {first}\n"), stdout=out).run()
    written = service.history.data_dir / "outputs" / f"{first}-0-before-after.png"
    assert f"before/after: {written}" in out.getvalue() and written.is_file()
    assert "sorry: That result isn't ready (or has no such image)." in out.getvalue()


def test_remixbot_remix_compare_writes_a_labelled_sheet_next_to_the_outputs(env, images_dir, tmp_path):
    models = write_models(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "remix",
            str(images_dir / "coffee.png"),
            "warm",
            "--seed",
            "5",
            "--compare",
            "painterly",
            "--show-source",
            "-o",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=dict(env, REMIXBOT_MODELS=str(models), REMIXBOT_DEVICE="cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    paths = [Path(line) for line in out.stdout.split()]
    first = paths[0].name.split("-")[0]
    assert paths[-1] == tmp_path / "out" / f"{first}-compare.png"
    results = [p for p in paths if p.name.endswith("-0.png")]
    assert len(results) == 2 and len([p for p in paths if p.name.endswith("-before-after.png")]) == 2
    sheet = png(paths[-1].read_bytes())
    assert sheet.shape[1] == 2 * 480 + 3 * sheets.GAP
    for (picture, label), result in zip(columns_of(sheet, [480, 480], 320), results, strict=True):
        assert np.abs(picture - png(result.read_bytes(), (480, 320))).mean() < 2 and has_label(label)
