"""The creative actions: --compare sheets, Before/after (a button, and --show-source), clips (MP4,
GIF), and the /remix options that carry the rest of the request grammar."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.jobs import Action, Origin, Status
from tests.adapters.discord.fake_server import custom_ids, rows
from tests.adapters.discord.steps import image_size, job_ids, remix, result, sheet_size, status_message

MODELS_TOML = """
[defaults]
model = "classic"
animate = "gifs"

[models.classic]
kind = "classic"
description = "No weights, instant."
size = 512
num_inference_steps = 1
guidance_scale = 0.0

[models.painterly]
kind = "classic"
description = "Classic again, softer."
strength = 0.4
size = 512
num_inference_steps = 1
guidance_scale = 0.0

[models.gifs]
kind = "classic"
description = "Classic, with its clips as GIFs."
clip_format = "gif"
"""


@pytest.fixture
async def creative(deploy, discord_settings, tmp_path):
    """The bot with two classic models to compare, and Animate making GIFs."""
    path = tmp_path / "creative-models.toml"
    path.write_text(MODELS_TOML, encoding="utf-8")
    return await deploy(replace(discord_settings, models_path=path))


def replies_to(server, message: dict) -> list[dict]:
    return [m for m in server.bot_messages() if m.get("message_reference", {}).get("message_id") == message["id"]]


async def test_compare_posts_each_result_then_one_sheet(creative, fake_discord, images_dir):
    server, service = fake_discord, creative.service
    ana = server.user("ana")
    typed = await server.autocomplete("remix", ana, focused="compare", compare="classic, pai")
    await typed.acknowledged()
    assert [c["value"] for c in typed.choices] == ["classic,painterly"]

    image = server.upload(images_dir / "chelsea.png")
    asked = await server.slash("remix", ana, image=image, prompt="warm", compare="painterly")
    first, second = job_ids(await asked.text())
    messages = [await result(server, service, job_id) for job_id in (first, second)]
    records = [await service.history.job(job_id) for job_id in (first, second)]
    assert [r.request.model for r in records] == ["classic", "painterly"]
    assert all(r.compare_of == first and r.status is Status.done for r in records)
    for message, record in zip(messages, records, strict=True):  # each result keeps its own buttons
        assert len(message["attachments"]) == 1 and f"source:{record.id}:0" in custom_ids(message)

    def sheets():
        return [m for m in server.bot_messages() if m["content"].startswith("Compare:")]

    (sheet,) = await server.until(sheets, what="the compare sheet")
    assert sheet["content"] == "Compare: classic · painterly" and not sheet["components"]
    assert sheet["message_reference"]["message_id"] == (await status_message(server, service, first))["id"]
    (attachment,) = sheet["attachments"]
    sizes = [[(o.width, o.height) for o in record.outputs] for record in records]
    assert image_size(server.files[int(attachment["id"])]) == sheet_size(*sizes)
    assert sheets() == [sheet], "exactly one sheet for the set"


async def test_before_after_button_answers_only_the_presser_and_makes_no_job(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    bo, cy = server.user("bo"), server.user("cy")
    _, job_id = await remix(server, bo, images_dir / "coffee.png", prompt="sketch", count=2, size=256)
    message = await result(server, service, job_id)
    assert rows(message)[-1] == [
        f"reroll:{job_id}",
        f"info:{job_id}",
        f"delete:{job_id}",
        f"source:{job_id}:0",
        f"more:{job_id}:0",
    ]
    posted = len(server.bot_messages())

    pressed = await server.press(message, f"source:{job_id}:0", cy)
    assert (await pressed.acknowledged())["type"] == 6 and pressed.ack_delay < 3
    answer = await pressed.reply(lambda m: bool(m["attachments"]))
    assert answer["flags"] & 64, "only the presser sees it"
    assert answer["content"] == "↔️ Before / after of images 1, 2 · classic"
    record = await service.history.job(job_id)
    source = image_size((await service.history.load_job(job_id)).image)
    for attachment, output in zip(answer["attachments"], record.outputs, strict=True):
        assert image_size(server.files[int(attachment["id"])]) == sheet_size([source], [(output.width, output.height)])
    assert len(server.bot_messages()) == posted, "nothing posted in the channel"
    assert len(await service.jobs(Origin("discord", str(cy.id)))) == 0, "not a job"


async def test_remix_options_show_source_gif_clips_and_a_big_upscale(creative, fake_discord, images_dir):
    server, service = fake_discord, creative.service
    di = server.user("di")
    _, job_id = await remix(
        server,
        di,
        images_dir / "chelsea.png",
        prompt="noir",
        size=256,
        steps=3,
        cfg=2.5,
        image_cfg=1.5,
        scale=4,
        show_source=True,
        motion="high",
        frames=6,
        fps=6,
        ref1=server.upload(images_dir / "coffee.png"),
        ref_scale=0.3,
    )
    message = await result(server, service, job_id)
    record = await service.history.job(job_id)
    r = record.request
    assert (r.num_inference_steps, r.guidance_scale, r.image_guidance_scale, r.scale) == (3, 2.5, 1.5, 4)
    assert (r.show_source, r.motion, r.num_frames, r.fps, r.ip_adapter_scale) == (True, "high", 6, 6, 0.3)
    assert len((await service.history.load_job(job_id)).references) == 1

    (shown,) = await server.until(lambda: replies_to(server, message), what="the before/after sheet")
    assert shown["content"] == "↔️ Before / after · classic"
    (attachment,) = shown["attachments"]
    output = record.outputs[0]
    assert image_size(server.files[int(attachment["id"])]) == sheet_size([(451, 300)], [(output.width, output.height)])

    animate = await server.press(message, f"animate:{job_id}:0", di)
    await animate.acknowledged()
    statuses = await server.until(lambda: [m for m in replies_to(server, message) if m is not shown], what="a job")
    clip_id = custom_ids(statuses[0])[-1].split(":")[1]
    clip_message = await result(server, service, clip_id)
    clip = await service.history.job(clip_id)
    assert clip.request.model == "gifs" and (clip.request.motion, clip.request.num_frames) == ("high", 6)
    (gif,) = clip_message["attachments"]
    assert gif["filename"].endswith(".gif") and server.files[int(gif["id"])].startswith(b"GIF8")
    assert custom_ids(clip_message) == [f"reroll:{clip_id}", f"info:{clip_id}", f"delete:{clip_id}"]

    # ×4 of the 256 px result is over this server's per-file limit: re-encoded to fit, not dropped
    server.attachment_size_limit = 200_000
    upscale = await server.press(message, f"upscale:{job_id}:0", di)
    await upscale.acknowledged()
    made = await server.until(
        lambda: [m for m in replies_to(server, message) if m["content"].startswith("⬆️")], what="the upscale"
    )
    upscale_id = custom_ids(made[0])[-1].split(":")[1]
    big = await result(server, service, upscale_id)
    upscaled = await service.history.job(upscale_id)
    assert upscaled.action is Action.upscale and upscaled.outputs[0].width == 4 * output.width
    assert upscaled.outputs[0].path.stat().st_size > 200_000
    (jpeg,) = big["attachments"]
    assert jpeg["filename"].endswith(".jpg") and jpeg["size"] <= 200_000
    assert "Re-encoded as JPEG" in big["content"]
