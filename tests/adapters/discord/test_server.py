"""Server admins on Discord, through the real discord.py client against the fake Discord: the /server
group (Manage Server only, checked on every call), the rules it sets refusing and logging, /help's
admin lines, and flagged results: only ever shown in age-restricted channels, as spoilers where the
server's policy says so. Verdicts are injected at the classifier's boundary (tests/adapters/verdicts.py).
"""

from __future__ import annotations

import pytest

from adapters.discord import gate
from bot.jobs import Origin, Status
from tests.adapters.discord.fake_server import GUILD_ID, MANAGE_GUILD, NotShown, custom_ids
from tests.adapters.discord.steps import job_ids, remix, result
from tests.adapters.verdicts import Scripted, inject

NOT_ADMIN = "Only members with the Manage Server permission"


@pytest.fixture
def scorer(monkeypatch) -> Scripted:
    scripted = Scripted()
    inject(monkeypatch, scripted)
    return scripted


def _origin(server, user) -> Origin:
    return Origin(platform="discord", user_id=str(user.id), chat_id=str(server.general.id), guild_id=str(GUILD_ID))


async def server_says(server, admin, line: str, **options) -> str:
    """``/server <line>`` as ``admin``: the ephemeral answer."""
    interaction = await server.slash(f"server {line}", admin, **options)
    text = await interaction.text()
    assert all(reply.get("flags", 0) & 64 for reply in interaction.replies()), "admin answers are ephemeral"
    return text.removeprefix("```\n").removesuffix("\n```")


async def refused(server, user, images_dir, **options) -> str:
    interaction = await server.slash(
        "remix", user, image=server.upload(images_dir / "coffee.png"), **{"prompt": "a watercolor", **options}
    )
    text = await interaction.text()
    assert not job_ids(text), f"a job was queued: {text}"
    return text


async def test_the_server_group_is_for_manage_server_only_and_checked_on_every_call(remixbot, fake_discord):
    server, service = fake_discord, remixbot.service
    (group,) = [c for c in server.global_commands if c["name"] == "server"]
    assert int(group["default_member_permissions"]) == MANAGE_GUILD
    assert group.get("contexts") == [0] or group.get("dm_permission") is False, "servers only"
    verbs = {o["name"] for o in group["options"]}
    assert verbs == {
        *("show", "nsfw", "ban", "unban", "models", "limits", "quota", "cooldown", "block", "unblock", "log"),
        "channels",
    }

    bob, mod = server.user("bob"), server.user("mod", manager=True)
    with pytest.raises(NotShown):
        await server.slash("server nsfw", bob, policy="allow")
    # the owner opens the command to everyone: the bot still checks the member's permissions
    server.override("server")
    assert NOT_ADMIN in await server_says(server, bob, "nsfw", policy="allow")
    assert NOT_ADMIN in await server_says(server, bob, "show")
    rules = await service.rules(_origin(server, bob))
    assert rules.nsfw.value == "block", "nothing changed"
    # Manage Server (without Administrator) is enough
    assert "NSFW: block" in await server_says(server, mod, "show")
    assert "NSFW: spoiler" in await server_says(server, mod, "nsfw", policy="spoiler")
    assert (await service.rules(_origin(server, bob))).nsfw.value == "spoiler"


async def test_help_lists_the_admin_commands_to_admins_only(remixbot, fake_discord):
    server = fake_discord
    bob, mod = server.user("bob"), server.user("mod", manager=True)
    everyone = await (await server.slash("help", bob)).text()
    assert "/remix" in everyone and "/server" not in everyone
    admins = await (await server.slash("help", mod)).text()
    assert admins.startswith(everyone) and "/server" in admins and "nsfw block|spoiler|allow" in admins
    in_dm = await (await server.slash("help", mod, server.dm(mod))).text()
    assert "/server" not in in_dm


async def test_each_rule_refuses_clearly_and_is_logged(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    bob, mod = server.user("bob"), server.user("mod", manager=True)
    await server_says(server, mod, "ban", words="Château")
    assert "isn't allowed here" in await refused(server, bob, images_dir, prompt="a CHATEAU at dusk")
    await server_says(server, mod, "unban", words="château")

    offered = await server.autocomplete("server models", mod, focused="names", names="classic, st")
    await offered.acknowledged()
    assert "classic, style" in [choice["value"] for choice in offered.choices]
    saved = await server_says(server, mod, "models", names="style")
    assert "Models: style" in saved
    assert "The model classic isn't allowed here. Allowed: style." in await refused(server, bob, images_dir)
    await server_says(server, mod, "models", names="all")

    await server_says(server, mod, "quota", jobs=1)
    _, first = await remix(server, bob, images_dir / "coffee.png")
    await result(server, service, first)
    assert "You've used today's 1 jobs here" in await refused(server, bob, images_dir)
    await server_says(server, mod, "quota", jobs=0)

    saved = await server_says(server, mod, "block", member=bob)
    assert str(bob.id) in saved
    assert await refused(server, bob, images_dir) == "You can't use the bot here."
    await server_says(server, mod, "unblock", member=bob)
    _, again = await remix(server, bob, images_dir / "coffee.png")
    assert (await service.history.job(again)) is not None

    log = await server_says(server, mod, "log")
    lines = log.splitlines()[1:]
    assert [line.rsplit(" · ", 1)[1].split(":")[0] for line in lines] == ["blocked", "quota", "model", "banned"]
    assert all(f"({bob.id})" in line for line in lines)
    assert "Château" in lines[-1] and "style" not in lines[-2] and "classic" in lines[-2]
    assert "No more entries." in await server_says(server, mod, "log", page=2)


async def test_limits_are_the_core_line(remixbot, fake_discord, images_dir):
    server = fake_discord
    bob, mod = server.user("bob"), server.user("mod", manager=True)
    saved = await server_says(server, mod, "limits", n=1, steps=3)
    assert "Max n: 1" in saved and "steps: 3" in saved
    text = await refused(server, bob, images_dir, count=2)
    assert "--n is at most 1 here (you asked for 2)" in text


async def test_the_answering_channels_are_the_servers_own_rule(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    art = server.channel("art")
    bob, mod = server.user("bob"), server.user("mod", manager=True)
    assert "Answers in: every channel" in await server_says(server, mod, "show")
    assert f"Answers in: <#{art.id}>" in await server_says(server, mod, "channels", action="add", where=art)
    assert "Pick the channel" in await server_says(server, mod, "channels", action="remove")

    text = await refused(server, bob, images_dir)
    assert text == f"I only answer in <#{art.id}> on this server.", "a pointer to the right channel"
    _, queued = await remix(server, bob, images_dir / "coffee.png", channel=art)
    assert (await service.history.job(queued)) is not None
    log = await server_says(server, mod, "log")
    assert "channel" in log.splitlines()[1] and f"({bob.id})" in log.splitlines()[1]

    assert "Answers in: every channel" in await server_says(server, mod, "channels", action="all")
    _, anywhere = await remix(server, bob, images_dir / "coffee.png")
    assert (await service.history.job(anywhere)) is not None


async def test_flagged_results_appear_only_in_age_restricted_channels(
    scorer, deploy, discord_settings, fake_discord, images_dir
):
    server = fake_discord
    adults = server.channel("adults", nsfw=True)
    deployment = await deploy(discord_settings)
    service = deployment.service
    alice, mod = server.user("alice"), server.user("mod", manager=True)

    await server_says(server, mod, "nsfw", policy="spoiler")
    scorer.flagging = True  # every picture the classifier sees from now on is flagged
    _, held = await remix(server, alice, images_dir / "coffee.png", prompt="in general")
    message = await result(server, service, held)
    assert message["attachments"] == [], "nothing flagged in a channel that isn't age-restricted"
    assert gate.held_back(1) in message["content"]
    record = await service.history.job(held)
    assert record.status is Status.done and record.outputs[0].flagged and record.outputs[0].spoiler
    source = next(i for i in custom_ids(message) if i.startswith(f"source:{held}"))
    shown = await server.press(message, source, alice)
    assert "age-restricted" in await shown.text() and not any(r.get("attachments") for r in shown.replies())

    _, spoiled = await remix(server, alice, images_dir / "coffee.png", channel=adults, prompt="in adults")
    message = await result(server, service, spoiled)
    (upload,) = message["attachments"]
    assert upload["filename"].startswith("SPOILER_"), "behind a spoiler where the policy says spoiler"

    await server_says(server, mod, "nsfw", policy="allow")
    _, allowed = await remix(server, alice, images_dir / "coffee.png", channel=adults, prompt="allowed")
    (upload,) = (await result(server, service, allowed))["attachments"]
    assert not upload["filename"].startswith("SPOILER_")
    _, still_held = await remix(server, alice, images_dir / "coffee.png", prompt="allowed, but general")
    assert (await result(server, service, still_held))["attachments"] == [], "allow never means #general"

    posted = [
        a for m in server.bot_messages(server.general) for a in m.get("attachments", []) if "interaction_token" not in m
    ]
    assert posted == [], "no picture of any flagged job was ever posted in #general"


async def test_under_block_a_flagged_source_is_refused_and_a_flagged_result_held_back(
    scorer, remixbot, fake_discord, images_dir
):
    server, service = fake_discord, remixbot.service
    alice, mod = server.user("alice"), server.user("mod", manager=True)
    scorer.flagging = True
    text = await refused(server, alice, images_dir)
    assert text == "That picture can't be used here: the content filter flagged it."
    scorer.flagging = False
    scorer.next.extend([False, True])  # the source passes; its result doesn't
    _, job_id = await remix(server, alice, images_dir / "coffee.png")
    message = await result(server, service, job_id)
    assert message["attachments"] == [] and "content filter held this result back" in message["content"]
    record = await service.history.job(job_id)
    assert record.status is Status.failed and record.outputs == (), "nothing flagged is stored"
    log = await server_says(server, mod, "log")
    assert log.count("classifier 0.93: ") == 2 and "1 of 1 results held back" in log


async def test_an_admin_cancels_and_deletes_anyones_job_here(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    alice, bob, mod = server.user("alice"), server.user("bob"), server.user("mod", manager=True)
    _, job_id = await remix(server, alice, images_dir / "coffee.png")
    message = await result(server, service, job_id)
    assert "Only the person who asked" in await (await server.press(message, f"delete:{job_id}", bob)).text()
    deleted = await server.press(message, f"delete:{job_id}", mod)
    await deleted.acknowledged()
    await server.until(lambda: int(message["id"]) in server.deleted, what="the result deleted by an admin")
    assert (await service.history.job(job_id)).removed == "deleted"
    assert f"delete:{job_id}" in custom_ids(message)
