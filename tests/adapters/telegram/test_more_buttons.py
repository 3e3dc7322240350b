"""➕ More under a result: Zoom out (1.5×, 2×), Pan (⬅️ ➡️ ⬆️ ⬇️) and ✂️ Cut out, with the real PTB client
against the fake Bot API; and --size above the render cap (upscaled, sent as a file when too big)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image

from adapters.telegram.keyboards import MAX_CALLBACK_DATA, MAX_ROW
from bot.jobs import Action, Status
from bot.service import CUTOUT_MISSING
from engine.kinds import outpaint
from tests.adapters.telegram.harness import (
    FAST,
    MODELS_TOML,
    Harness,
    models_file,
    picture,
    press,
    remix,
    toast,
    wait_results,
)

NOT_HERE = "That result isn't available here."
CUTOUT_TOML = (
    MODELS_TOML
    + """
[models.cutout]
kind = "cutout"
source = "weights:cutout"
group = "cpu"
size = 1536
multiple = 1
"""
)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


async def more(fake, user, message, job_id: str, index: int = 0) -> list[str]:
    """Tap ➕ More → the callbacks the same message carries afterwards."""
    before = list(message.callbacks)
    await toast(fake, user, message, f"more:{job_id}:{index}")
    return await fake.wait_for(lambda: message.callbacks if message.callbacks != before else None, what="more rows")


async def test_more_then_zoom_out_and_pan_chain_and_keep_the_picture(bot, fake, alice):
    chat = fake.private(alice)
    _, job_id, result = await remix(fake, chat, alice, "/remix warm --size 256", picture(240, 160, seed=3))
    assert f"more:{job_id}:0" in result.callbacks and not any(c.startswith("zoom") for c in result.callbacks)
    shown = await more(fake, alice, result, job_id)
    assert [c for c in shown if not c.startswith(("reroll", "vary", "upscale", "fixface", "animate"))] == [
        f"original:{job_id}:0",
        f"source:{job_id}:0",
        f"info:{job_id}",
        f"zoom15:{job_id}:0",
        f"zoom2:{job_id}:0",
        f"cutout:{job_id}:0",
        f"panleft:{job_id}:0",
        f"panright:{job_id}:0",
        f"panup:{job_id}:0",
        f"pandown:{job_id}:0",
        f"delete:{job_id}",
    ]
    assert all(len(c.encode()) <= MAX_CALLBACK_DATA for c in shown)
    labels = [b["text"] for b in result.buttons]
    assert "🔍 Zoom out 2×" in labels and "⬅️ Pan left" in labels and "✂️ Cut out" in labels

    said, zoom_id = await press(fake, alice, result, f"zoom2:{job_id}:0")
    assert said.startswith("🔍 Zoom out 2×")
    (zoomed_photo,) = await wait_results(fake, chat["id"], zoom_id)
    assert zoomed_photo.reply_to == result.message_id and f"more:{zoom_id}:0" in zoomed_photo.callbacks
    await more(fake, alice, zoomed_photo, zoom_id)  # a zoom out of the zoom out
    _, again_id = await press(fake, alice, zoomed_photo, f"zoom15:{zoom_id}:0")
    _, pan_id = await press(fake, alice, zoomed_photo, f"panleft:{zoom_id}:0")
    await wait_results(fake, chat["id"], again_id)
    await wait_results(fake, chat["id"], pan_id)

    history = bot.service.history
    parent, zoomed = await history.job(job_id), await history.job(zoom_id)
    again, panned = await history.job(again_id), await history.job(pan_id)
    for record, source, zoom, pan in (
        (zoomed, parent, 2.0, None),
        (again, zoomed, 1.5, None),
        (panned, zoomed, None, "left"),
    ):
        assert record.status is Status.done and record.action is Action.outpaint, record.error
        assert (record.parent_job, record.parent_output) == (source.id, 0)
        inner = pixels(source.outputs[0].path)
        plan = outpaint.layout((inner.shape[1], inner.shape[0]), zoom=zoom, pan=pan, max_side=1536)
        out = pixels(record.outputs[0].path)
        assert out.shape[:2] == (plan.canvas[1], plan.canvas[0])
        left, top, right, bottom = plan.box
        assert np.array_equal(out[top:bottom, left:right], inner), "the picture itself is untouched"
    # the result photo shows exactly the stored result
    assert np.array_equal(np.asarray(zoomed_photo.image().convert("RGB")), pixels(zoomed.outputs[0].path))


async def test_an_albums_more_opens_one_images_rows(bot, fake, alice):
    chat = fake.private(alice)
    asked = fake.send(chat, alice, caption="/remix sketch --n 2 --size 192", photo=picture(180, 120, seed=8))
    keyboard = await fake.wait_for(
        lambda: next((m for m in fake.bot_messages(chat["id"], "text") if "takes on" in m.text), None),
        what="the album's keyboard",
    )
    job_id = keyboard.callbacks[0].split(":")[1]
    rows = keyboard.markup["inline_keyboard"]
    assert all(len(row) <= MAX_ROW for row in rows)
    assert [b["callback_data"] for b in rows[2]][-3:] == [
        f"more:{job_id}:1",
        f"original:{job_id}:1",
        f"source:{job_id}:1",
    ]
    shown = await more(fake, alice, keyboard, job_id, 1)
    assert f"zoom15:{job_id}:1" in shown and f"pandown:{job_id}:1" in shown and f"zoom15:{job_id}:0" not in shown
    labels = [b["text"] for b in keyboard.buttons]
    assert "🔍 Zoom out 1.5× #2" in labels and "✂️ Cut out #2" in labels
    _, pan_id = await press(fake, alice, keyboard, f"panright:{job_id}:1")
    (panned,) = await wait_results(fake, chat["id"], pan_id)
    record = await bot.service.history.job(pan_id)
    assert record.status is Status.done and record.parent_output == 1 and asked.message_id


async def test_another_chat_cannot_zoom_pan_or_cut_out_a_result(bot, fake, alice, bob):
    club, other = fake.group(), fake.group(-1002000000002, "Elsewhere")
    _, secret, _ = await remix(fake, club, alice, "/remix secret --size 128")
    _, _, own_result = await remix(fake, other, bob, "/remix mine --size 128")
    for data in (f"more:{secret}:0", f"zoom2:{secret}:0", f"panup:{secret}:0", f"cutout:{secret}:0"):
        assert await toast(fake, bob, own_result, data) == NOT_HERE, data
    history = bot.service.history
    made = [job for user in await history.users() for job in await history.jobs_of(user.id, limit=50)]
    assert [job for job in made if job.parent_job == secret] == []


async def test_cut_out_without_its_weights_says_how_to_install_them(fake, alice, tg_settings, tmp_path):
    harness = Harness(fake, replace(tg_settings, models_path=models_file(tmp_path, CUTOUT_TOML, "cut.toml")))
    await harness.start()
    try:
        chat = fake.private(alice)
        _, job_id, result = await remix(fake, chat, alice, "/remix warm --size 128")
        assert await toast(fake, alice, result, f"cutout:{job_id}:0") == CUTOUT_MISSING
    finally:
        await harness.stop()


async def test_cut_out_arrives_as_a_transparent_png_file(fake, alice, tg_settings, tmp_path, real_weights, images_dir):
    toml = CUTOUT_TOML.replace('"weights:cutout"', f'"{real_weights("cutout")}"')
    harness = Harness(fake, replace(tg_settings, models_path=models_file(tmp_path, toml, "cut.toml")))
    await harness.start()
    try:
        chat = fake.private(alice)
        astronaut = (images_dir / "astronaut.png").read_bytes()
        _, job_id, result = await remix(fake, chat, alice, "/remix warm --size 256", astronaut)
        await more(fake, alice, result, job_id)
        said, cut_id = await press(fake, alice, result, f"cutout:{job_id}:0")
        assert said.startswith("✂️ Cut out")
        (preview,) = await wait_results(fake, chat["id"], cut_id)
        (document,) = await fake.wait_for(lambda: fake.replies_to(preview, "document"), what="the cut-out file")
        record = await harness.service.history.job(cut_id)
    finally:
        await harness.stop()
    assert record.status is Status.done and record.action is Action.cutout
    png = Image.open(io.BytesIO(document.data))
    assert png.format == "PNG" and png.mode == "RGBA" and document.filename.endswith(".png")
    assert document.data == record.outputs[0].path.read_bytes() and "transparent" in document.text
    alpha = np.asarray(png)[..., 3]
    assert alpha.min() < 20 and alpha.max() > 235  # a subject and a see-through background
    assert preview.data[:2] == b"\xff\xd8"  # the photo is a preview (on a checkerboard), the file is the cut-out


async def test_size_above_the_render_cap_is_upscaled_and_a_big_one_comes_as_a_file(fake, alice, tg_settings):
    limits = replace(tg_settings.limits, max_size=256, max_output_size=1024)
    harness = Harness(fake, replace(tg_settings, limits=limits), options=replace(FAST, photo_max_bytes=20_000))
    await harness.start()
    try:
        chat = fake.private(alice)
        _, job_id, result = await remix(fake, chat, alice, "/remix warm --size 1k", picture(300, 200, seed=2))
        record = await harness.service.history.job(job_id)
        (document,) = await fake.wait_for(lambda: fake.replies_to(result, "document"), what="the full-size file")
        refused = fake.send(chat, alice, caption="/remix warm --size 2k", photo=picture(300, 200, seed=2))
        answer = await fake.wait_for(lambda: fake.replies_to(refused, "text"), what="the refusal")
    finally:
        await harness.stop()
    made = (record.outputs[0].width, record.outputs[0].height)
    assert record.status is Status.done and made[0] == 1024 and made[1] < 1024
    assert "upscaled to 1024 px" in record.note
    assert Image.open(io.BytesIO(document.data)).size == made and "too big for a photo" in document.text
    assert "size must be between 64 and 1024, got 2k" in answer[0].text


async def test_cut_out_on_a_registry_without_a_cutout_model_says_how_to_get_one(bot, fake, alice):
    chat = fake.private(alice)
    _, job_id, result = await remix(fake, chat, alice, "/remix warm --size 128")  # MODELS_TOML: no cutout entry
    await more(fake, alice, result, job_id)
    assert await toast(fake, alice, result, f"cutout:{job_id}:0") == CUTOUT_MISSING
