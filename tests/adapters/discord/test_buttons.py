"""The buttons under a result: every one of them, after a restart, and by several users at once."""

from __future__ import annotations

import asyncio

from bot.jobs import Action, Origin, Status
from tests.adapters.discord.fake_server import custom_ids
from tests.adapters.discord.steps import remix, result

JOB_BUTTONS = {
    "upscale": Action.upscale,
    "fixface": Action.fixface,
    "animate": Action.animate,
    "vary": Action.vary,
    "varystrong": Action.vary,
    "reroll": Action.reroll,
}


def answers_to(server, parent: dict) -> list[dict]:
    """Bot messages that reply to ``parent`` (the status messages of jobs made from it)."""
    return [m for m in server.bot_messages() if m.get("message_reference", {}).get("message_id") == parent["id"]]


def job_of(message: dict) -> str:
    return custom_ids(message)[-1].split(":")[1]


def origin(user) -> Origin:
    return Origin(platform="discord", user_id=str(user.id))


async def test_every_button_works_after_a_restart(remixbot, fake_discord, images_dir):
    server = fake_discord
    alice, bob, admin = server.user("alice"), server.user("bob"), server.user("mod", admin=True)
    _, first = await remix(server, alice, images_dir / "chelsea.png", prompt="warm sunset")
    parent = await result(server, remixbot.service, first)

    await remixbot.restart()  # a new process: new service, new client, nothing in memory
    service = remixbot.service

    for count, (name, action) in enumerate(JOB_BUTTONS.items(), start=1):
        custom_id = f"{name}:{first}" if name == "reroll" else f"{name}:{first}:0"
        pressed = await server.press(parent, custom_id, bob)
        answer = await pressed.acknowledged()
        assert answer["type"] == 6 and pressed.ack_delay < 3, "a deferred update, at once"
        statuses = await server.until(
            lambda made=count: len(answers_to(server, parent)) == made and answers_to(server, parent),
            what=f"the status message of the {name} job",
        )
        status = statuses[-1]
        child = job_of(status)
        message = await result(server, service, child)
        record = await service.job(child)
        assert record.action is action and record.parent_job == first
        assert record.origin.user_id == str(bob.id), "the new job is the presser's"
        assert record.parent_output == (None if name == "reroll" else 0)
        assert record.status is Status.done and message["attachments"]
        if name == "animate":  # a clip: no per-image buttons, only the last row (no Before/after)
            (clip,) = message["attachments"]
            assert clip["filename"].endswith(".mp4") and record.outputs[0].media_type == "video/mp4"
            assert server.files[int(clip["id"])][4:8] == b"ftyp", "a real MP4"
            assert custom_ids(message) == [f"reroll:{child}", f"info:{child}", f"delete:{child}"]
        else:
            assert f"source:{child}:0" in custom_ids(message)
    made = await service.jobs(origin(bob), per_page=10)
    assert sorted(r.request.strength for r in made if r.action is Action.vary) == [0.35, 0.7], "subtle and strong"
    upscaled = next(r for r in made if r.action is Action.upscale)
    assert upscaled.outputs[0].width == 2 * (await service.job(first)).outputs[0].width

    info = await server.press(parent, f"info:{first}", bob)
    text = await info.text()
    assert f"`{first}`" in text and "warm sunset" in text and "Repeat:" in text
    assert info.replies()[0]["flags"] & 64, "only the presser sees the info"

    refused = await server.press(parent, f"delete:{first}", bob)
    assert "Only the person who asked" in await refused.text()
    assert int(parent["id"]) in server.messages

    deleted = await server.press(parent, f"delete:{first}", alice)
    await deleted.acknowledged()
    await server.until(lambda: int(parent["id"]) in server.deleted, what="the result deleted by its requester")

    _, other = await remix(server, alice, images_dir / "coffee.png")
    other_message = await result(server, service, other)
    by_admin = await server.press(other_message, f"delete:{other}", admin)
    await by_admin.acknowledged()
    await server.until(lambda: int(other_message["id"]) in server.deleted, what="the result deleted by an admin")


async def test_two_users_press_buttons_on_one_result_at_once(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    owner, carol, dave = server.user("owner"), server.user("carol"), server.user("dave")
    _, first = await remix(server, owner, images_dir / "coffee.png", prompt="vintage")
    parent = await result(server, service, first)

    presses = await asyncio.gather(
        server.press(parent, f"reroll:{first}", carol), server.press(parent, f"vary:{first}:0", dave)
    )
    await asyncio.gather(*(p.acknowledged() for p in presses))
    assert all(p.ack_delay < 3 for p in presses)
    statuses = await server.until(
        lambda: len(answers_to(server, parent)) == 2 and answers_to(server, parent),
        what="two status messages answering the result",
    )
    records = []
    for status in statuses:
        await result(server, service, job_of(status))
        records.append(await service.job(job_of(status)))
    assert {r.origin.user_id for r in records} == {str(carol.id), str(dave.id)}
    assert {r.parent_job for r in records} == {first}
    assert {r.action for r in records} == {Action.reroll, Action.vary}
    assert all(r.status is Status.done for r in records)


async def test_a_button_whose_job_is_unknown(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    _, first = await remix(server, server.user("erin"), images_dir / "coffee.png")
    parent = await result(server, service, first)
    stale = dict(
        parent,
        components=[
            {
                "type": 1,
                "components": [{"type": 2, "style": 2, "label": "Reroll", "custom_id": "reroll:0123456789ab"}],
            }
        ],
    )
    pressed = await server.press(stale, "reroll:0123456789ab", server.user("finn"))
    text = await pressed.text()
    assert "can't find that result" in text and pressed.followups[0]["flags"] & 64
