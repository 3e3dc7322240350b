"""/styles and /loras with the real discord.py client against the fake Discord, the /remix style option
(with its autocomplete), and the prompt's autocomplete for ``<lora:`` tags."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.jobs import Origin
from tests.adapters.discord.fake_server import GUILD_ID
from tests.adapters.discord.steps import remix
from tests.bot.test_styles import lora_file

HERE = Origin(platform="discord", user_id="1", chat_id="1", guild_id=str(GUILD_ID))


async def test_styles_lists_global_server_and_style_model_names(remixbot, fake_discord):
    server = fake_discord
    await remixbot.service.add_style(HERE, "club_look", "**bold** {prompt} --no _blur_ --strength 0.3")
    shown = await server.slash("styles", server.user("sam"))
    text = await shown.text()
    assert shown.replies()[0]["flags"] & 64, "only the asker sees it"
    assert text.startswith("**Styles**") and "`cinematic`" in text and "`pixel-art`" in text
    assert "**This chat's own:**" in text and "`club_look` — \\*\\*bold\\*\\* {prompt}" in text, "markdown escaped"
    assert "starry" in text and len(text) <= 2000


async def test_style_option_autocompletes_and_applies(remixbot, fake_discord, images_dir):
    server = fake_discord
    await remixbot.service.add_style(HERE, "watery", "wet {prompt}")
    sam = server.user("sam")
    typed = await server.autocomplete("remix", sam, focused="style", style="water")
    await typed.acknowledged()
    values = [c["value"] for c in typed.choices]
    assert values == ["watery", "watercolor"], "the server's own first, then the global ones"
    assert all(len(c["name"]) <= 100 for c in typed.choices)
    starry = await server.autocomplete("remix", sam, focused="style", style="starr")
    await starry.acknowledged()
    assert [c["value"] for c in starry.choices] == ["starry"]

    _, job_id = await remix(server, sam, images_dir / "coffee.png", prompt="a harbor", style="watercolor")
    record = await remixbot.service.history.job(job_id)
    assert record.request.style == "watercolor" and record.request.prompt.startswith("watercolor painting of a harbor")
    asked = await server.slash(
        "remix", sam, image=server.upload(images_dir / "coffee.png"), prompt="a harbor", style="nope"
    )
    assert await asked.text() == "I don't know the style 'nope'. Try /styles to see them."


@pytest.fixture
async def with_loras(deploy, discord_settings, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    lora_file(folder / "pixel_art.safetensors", width=768)
    lora_file(folder / "pixel_soft.safetensors", width=2048)
    lora_file(folder / "ink.safetensors")
    return await deploy(replace(discord_settings, lora_dir=folder))


async def test_loras_lists_them_and_the_prompt_completes_tags(with_loras, fake_discord):
    server = fake_discord
    listed = await server.slash("loras", server.user("lia"))
    text = await listed.text()
    assert "`ink` · unknown" in text and "`pixel_art` · SD 1.x" in text and "`pixel_soft` · SDXL" in text

    typed = await server.autocomplete("remix", server.user("lia"), focused="prompt", prompt="a fox <lora:pix")
    await typed.acknowledged()
    assert [c["value"] for c in typed.choices] == ["a fox <lora:pixel_art:0.8>", "a fox <lora:pixel_soft:0.8>"]
    assert typed.choices[0]["name"] == "a fox <lora:pixel_art:0.8> — SD 1.x"
    plain = await server.autocomplete("remix", server.user("lia"), focused="prompt", prompt="a fox in the snow")
    await plain.acknowledged()
    assert plain.choices == [], "no suggestions while no tag is being typed: the prompt stays free text"


async def test_loras_with_none(remixbot, fake_discord):
    listed = await fake_discord.slash("loras", fake_discord.user("lia"))
    assert "No LoRAs on this server" in await listed.text()
