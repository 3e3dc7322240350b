"""Forged button ids (a modified client sends any custom_id) and 🗑 Delete, through the real
discord.py client against the fake Discord: the core's access rule decides, and nothing leaks."""

from __future__ import annotations

from tests.adapters.discord.fake_server import custom_ids
from tests.adapters.discord.steps import remix, result

NOT_HERE = "That result isn't available here."


def forged(message: dict, *ids: str) -> dict:
    """``message`` as a modified client shows it: with buttons naming whatever it likes."""
    buttons = [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id} for custom_id in ids]
    return dict(message, components=[{"type": 1, "components": buttons[i : i + 5]} for i in range(0, len(ids), 5)])


async def test_a_forged_button_for_another_channels_job_is_refused_and_leaks_nothing(
    remixbot, fake_discord, images_dir
):
    server, service = fake_discord, remixbot.service
    alice, mallory = server.user("alice"), server.user("mallory")
    _, secret = await remix(server, alice, images_dir / "coffee.png", prompt="secret sauce")
    await result(server, service, secret)
    other = server.channel("other")
    _, hers = await remix(server, mallory, images_dir / "chelsea.png", channel=other, prompt="mine")
    own = await result(server, service, hers)
    ids = (f"info:{secret}", f"source:{secret}:0", f"reroll:{secret}", f"upscale:{secret}:0", f"delete:{secret}")
    bait = forged(own, *ids)
    before = len(server.bot_messages(other))
    for custom_id in ids:
        pressed = await server.press(bait, custom_id, mallory)
        text = await pressed.text()
        assert text == NOT_HERE, (custom_id, text)
        assert all("secret" not in str(reply) for reply in pressed.replies())
        assert not any(reply.get("attachments") for reply in pressed.replies()), "no picture of it"
    dm = server.dm(mallory)
    pressed = await server.press(forged(dict(own, channel_id=str(dm.id)), f"info:{secret}"), f"info:{secret}", mallory)
    assert await pressed.text() == NOT_HERE
    assert len(server.bot_messages(other)) == before, "no job, no status message in the other channel"
    assert int(own["id"]) not in server.deleted


async def test_delete_cannot_remove_someone_elses_message(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    alice, bob = server.user("alice"), server.user("bob")
    _, alices = await remix(server, alice, images_dir / "coffee.png", prompt="alice's")
    message = await result(server, service, alices)
    _, bobs = await remix(server, bob, images_dir / "chelsea.png", prompt="bob's")
    await result(server, service, bobs)
    # his own job's id on her message: refused, her message stays
    pressed = await server.press(forged(message, f"delete:{bobs}"), f"delete:{bobs}", bob)
    assert await pressed.text() == NOT_HERE
    pressed = await server.press(message, f"delete:{alices}", bob)
    assert "Only the person who asked" in await pressed.text()
    assert int(message["id"]) not in server.deleted and f"delete:{alices}" in custom_ids(message)
    source = service.history.source_path(alices)
    assert source.exists()
    deleted = await server.press(message, f"delete:{alices}", alice)
    await deleted.acknowledged()
    await server.until(lambda: int(message["id"]) in server.deleted, what="her result deleted by her")
    assert not source.exists() and (await service.history.job(alices)).removed == "deleted"


async def test_forget_asks_privately_then_deletes_the_history(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    wes = server.user("wes")
    _, job_id = await remix(server, wes, images_dir / "coffee.png", prompt="to forget")
    await result(server, service, job_id)
    asked = await server.slash("forget", wes)
    assert "deletes all 1 of your jobs" in await asked.text()
    question = asked.replies()[-1]
    (confirm,) = [custom_id for custom_id in custom_ids(question) if custom_id.startswith("forget:")]
    done = await server.press(question, confirm, wes)
    assert "Forgotten: 1 job" in await done.text()
    assert await service.history.job(job_id) is None and not service.history.source_path(job_id).exists()
