"""Forged button presses (callback data is the client's to choose) and 🗑 Delete, through the real
PTB client against the fake Bot API: the core's access rule decides, and nothing leaks."""

from __future__ import annotations

from bot.jobs import Status
from tests.adapters.telegram.harness import remix, toast

NOT_HERE = "That result isn't available here."


async def test_a_forged_press_for_another_chats_job_is_refused_and_leaks_nothing(bot, fake, alice, bob):
    club, other = fake.group(), fake.group(-1002000000002, "Elsewhere")
    _, secret, _ = await remix(fake, club, alice, "/remix secret sauce --seed 4")
    _, mine, own_result = await remix(fake, other, bob, "/remix my own")
    before = len(fake.calls)
    for data in (
        f"info:{secret}",
        f"original:{secret}:0",
        f"source:{secret}:0",
        f"reroll:{secret}",
        f"upscale:{secret}:0",
    ):
        assert await toast(fake, bob, own_result, data) == NOT_HERE, data
    bob_dm = fake.private(bob)
    _, _, dm_result = await remix(fake, bob_dm, bob, "/remix in private")
    assert await toast(fake, bob, dm_result, f"info:{secret}") == NOT_HERE
    sent = [c for c in fake.calls[before:] if c.method.startswith("send") and c.method != "sendChatAction"]
    leaked = [c for c in sent if c.params.get("chat_id") == str(other["id"])]
    assert leaked == [], "no message, photo or file about the secret job reached the other chat"
    assert all("secret" not in str(c.params) for c in fake.calls[before:])
    history = bot.service.history
    made = [job for user in await history.users() for job in await history.jobs_of(user.id, limit=50)]
    assert [job for job in made if job.parent_job == secret] == [], "no job was made from it"
    assert (await bot.service.history.job(mine)).status is Status.done


async def test_delete_removes_only_the_jobs_own_message_for_its_owner_or_an_admin(bot, fake, alice, bob):
    club = fake.group()
    _, alices, alices_result = await remix(fake, club, alice, "/remix alice's")
    _, bobs, _ = await remix(fake, club, bob, "/remix bob's")
    refused = await toast(fake, bob, alices_result, f"delete:{alices}")
    assert "Only the person who asked" in refused
    assert await toast(fake, bob, alices_result, f"delete:{bobs}") == NOT_HERE, "his job, her message"
    assert not alices_result.deleted and alices_result.data is not None
    source = bot.service.history.source_path(alices)
    assert source.exists()

    fake.admins.add(bob["id"])  # getChatMember now says he administers the group
    assert await toast(fake, bob, alices_result, f"delete:{alices}") == "🗑 Deleted"
    await fake.wait_for(lambda: alices_result.deleted, what="the result message deleted")
    assert not source.exists() and (await bot.service.history.job(alices)).removed == "deleted"
    assert "deleted" in await toast(fake, alice, alices_result, f"reroll:{alices}")


async def test_forget_asks_then_deletes_only_the_pressers_history(bot, fake, alice, bob):
    chat = fake.private(alice)
    _, job_id, _ = await remix(fake, chat, alice, "/remix to forget")
    asked = fake.send(chat, alice, text="/forget")
    (question,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="the confirmation question")
    assert "deletes all 1 of your jobs" in question.text
    confirm = question.callback("forget:")
    assert "isn't valid" in await toast(fake, bob, question, confirm), "her button is hers"
    assert await bot.service.history.job(job_id) is not None
    assert await toast(fake, alice, question, confirm) == "🗑 Forgotten"
    assert await bot.service.history.job(job_id) is None
    assert not bot.service.history.source_path(job_id).exists()
