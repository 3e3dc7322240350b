"""/styles and /loras with the real python-telegram-bot client against the fake Bot API, --style in a
caption, and a picture's own settings (or a request for a prompt) when it comes with no text."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.jobs import Origin
from bot.service import ASK_FOR_PROMPT
from tests.adapters.telegram.harness import Harness, new_jobs, picture
from tests.bot.test_metadata import COMFY_PROMPT, COMFY_WORKFLOW, png
from tests.bot.test_styles import lora_file


async def said(fake, chat, user, text: str) -> str:
    asked = fake.send(chat, user, text=text)
    replies = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what=f"a reply to {text}")
    return replies[0].text


async def test_styles_lists_the_global_ones_and_a_groups_own(bot, fake, alice):
    private = await said(fake, fake.private(alice), alice, "/styles")
    assert private.startswith("Styles — add --style NAME")
    assert all(name in private for name in ("cinematic", "watercolor", "anime", "pixel-art", "photo", "line-art"))
    assert "This chat's own" not in private

    group = fake.group()
    where = Origin(platform="telegram", user_id=str(alice["id"]), chat_id=str(group["id"]))
    await bot.service.add_style(where, "club", "a <b>bold</b> {prompt} --strength 0.3")
    shown = await said(fake, group, alice, "/styles")
    assert "This chat's own:" in shown and "club — a <b>bold</b> {prompt}" in shown, "escaped, shown as typed"
    assert "club" not in await said(fake, fake.private(alice), alice, "/styles")

    asked = fake.send(group, alice, caption="/remix a cat --style club", photo=picture())
    (job_id,) = await new_jobs(fake, asked)
    job = await bot.service.history.job(job_id)
    assert job.request.prompt == "a <b>bold</b> a cat" and job.request.strength == 0.3 and job.request.style == "club"


async def test_an_unknown_style_is_a_friendly_reply(bot, fake, alice):
    asked = fake.send(fake.private(alice), alice, caption="/remix a cat --style cinematc", photo=picture())
    (reply,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="the refusal")
    assert reply.text == "⚠️ I don't know the style 'cinematc'. Did you mean cinematic? Try /styles to see them."


@pytest.fixture
async def lora_bot(fake, tg_settings, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    lora_file(folder / "pixel_art.safetensors", width=768)
    lora_file(folder / "film_grain.safetensors", xl=True)
    harness = Harness(fake, replace(tg_settings, lora_dir=folder))
    await harness.start()
    yield harness
    await harness.stop()


async def test_loras_lists_names_and_base_models(lora_bot, fake, alice):
    text = await said(fake, fake.private(alice), alice, "/loras")
    lines = text.splitlines()
    assert lines[0].startswith("LoRAs — put <lora:NAME:0.8> in a prompt")
    assert lines[1:] == ["film_grain · SDXL", "pixel_art · SD 1.x"]


async def test_loras_when_there_are_none(bot, fake, alice):
    assert "No LoRAs on this server" in await said(fake, fake.private(alice), alice, "/loras")


async def test_a_file_with_no_text_is_remixed_with_the_settings_it_carries(bot, fake, alice):
    data = png({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)})
    sent = fake.send(fake.private(alice), alice, document=data, filename="comfy.png")
    (job_id,) = await new_jobs(fake, sent)
    job = await bot.service.history.job(job_id)
    assert job.request.prompt == "a lighthouse at dusk, oil painting" and job.request.seed == 987654321

    asked = fake.send(fake.private(alice), alice, document=picture(), filename="plain.png")
    (reply,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="a request for a prompt")
    assert reply.text == f"⚠️ {ASK_FOR_PROMPT}"
    in_group = fake.send(fake.group(), alice, caption="/remix", photo=picture())
    (reply,) = await fake.wait_for(lambda: fake.replies_to(in_group, "text"), what="a request for a prompt")
    assert reply.text == f"⚠️ {ASK_FOR_PROMPT}"
