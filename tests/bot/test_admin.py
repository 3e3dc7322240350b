"""``/server …`` lines as admins type them, answered by the core on a real SQLite file."""

from __future__ import annotations

import pytest

from adapters.cli import build_service, close_service
from bot.admin import USAGE, server_command
from bot.jobs import Origin
from bot.service import Refusal

ADMIN = Origin(platform="telegram", user_id="5", chat_id="-1001", user_name="Mod")
USER = Origin(platform="telegram", user_id="6", chat_id="-1001", user_name="Pat")


@pytest.fixture
async def service(settings):
    service = await build_service(settings)
    yield service
    await close_service(service)


async def test_show_and_each_setting(service):
    shown = await server_command(service, ADMIN, "show")
    assert "NSFW: block" in shown and "Banned words: none" in shown and "Models: all" in shown
    assert "NSFW: spoiler" in await server_command(service, ADMIN, "nsfw Spoiler")
    await server_command(service, ADMIN, "ban hot chili")
    assert "Banned words: hot chili, gore" in await server_command(service, ADMIN, "ban gore")
    assert "Banned words: gore" in await server_command(service, ADMIN, "unban HOT CHILI")
    assert "Models: classic" in await server_command(service, ADMIN, "models classic")
    assert "Max n: 2 · size: 768 · steps: the bot's limit" in await server_command(
        service, ADMIN, "limits n=2 size=768"
    )
    assert "Daily quota: 10 · cooldown: none" in await server_command(service, ADMIN, "quota 10")
    assert "cooldown: 30 s" in await server_command(service, ADMIN, "cooldown 30")
    assert "Blocked users: 6" in await server_command(service, ADMIN, "block 6")
    assert "Models: all" in await server_command(service, ADMIN, "models all")
    rules = await service.rules(USER)  # applied at once, to everyone there
    assert rules.banned == ("gore",) and rules.blocked == ("6",) and rules.max_num_images == 2
    assert "Blocked users: none" in await server_command(service, ADMIN, "unblock 6")


async def test_bad_lines_get_the_usage_or_a_clear_reason(service):
    for line in ("frobnicate", "quota lots", "ban", "block"):
        with pytest.raises(Refusal) as refused:
            await server_command(service, ADMIN, line)
        assert str(refused.value) == USAGE
    with pytest.raises(Refusal, match="n=2 size=768"):
        await server_command(service, ADMIN, "limits width=3")
    with pytest.raises(Refusal, match="no model called"):
        await server_command(service, ADMIN, "models nope")
    with pytest.raises(Refusal, match="valid setting"):
        await server_command(service, ADMIN, "nsfw sometimes")


async def test_answering_channels_follow_a_threads_channel_and_are_discord_only(service, images_dir):
    mod = Origin(platform="discord", user_id="5", chat_id="111111", guild_id="77", user_name="Mod")
    assert "Answers in: <#222222>, <#333333>" in await server_command(service, mod, "channels add <#222222> <#333333>")
    assert "Answers in: <#333333>" in await server_command(service, mod, "channels remove 222222")
    source = (images_dir / "coffee.png").read_bytes()
    elsewhere = Origin(platform="discord", user_id="6", chat_id="222222", guild_id="77")
    with pytest.raises(Refusal, match="I only answer in <#333333> on this server."):
        await service.submit(elsewhere, "a watercolor", source)
    in_thread = Origin(platform="discord", user_id="6", chat_id="444444", guild_id="77", parent_id="333333")
    assert (await service.submit(in_thread, "a watercolor", source)).job.id
    in_dm = Origin(platform="discord", user_id="6", chat_id="555555", private=True)
    assert (await service.submit(in_dm, "a watercolor", source)).job.id, "a DM is no server channel"
    with pytest.raises(Refusal, match="Channels look like"):
        await server_command(service, mod, "channels add art")
    with pytest.raises(Refusal, match="a Discord server setting"):
        await server_command(service, ADMIN, "channels add 222222")


async def test_the_log_command_pages_refusals(service, images_dir):
    assert await server_command(service, ADMIN, "log") == "Nothing in the moderation log."
    await server_command(service, ADMIN, "ban gore")
    with pytest.raises(Refusal):
        await service.submit(USER, "GORE", (images_dir / "coffee.png").read_bytes())
    page = await server_command(service, ADMIN, "log")
    assert page.startswith("Moderation log, page 1") and "Pat (6) · banned: gore" in page
    assert await server_command(service, ADMIN, "log 2") == "No more entries."
