"""Group admins on Telegram, through the real PTB client against the fake Bot API: ``/server`` for chat
administrators only (getChatMember, cached), the rules it sets refusing and logging, /help's admin
lines, a user's own NSFW setting in private, and flagged results sent with ``has_spoiler`` where the
policy says spoiler. Verdicts are injected at the classifier's boundary (tests/adapters/verdicts.py).
"""

from __future__ import annotations

import pytest
from telegram import Bot

from adapters.telegram.server import NOT_ADMIN, PRIVATE_ONLY, Admins
from bot.jobs import Origin
from bot.moderation import SOURCE_FLAGGED
from tests.adapters.telegram.harness import TOKEN, Harness, new_jobs, picture, remix, results, wait_final, wait_results
from tests.adapters.verdicts import LABEL, Scripted, safety_of


@pytest.fixture
def scorer() -> Scripted:
    return Scripted()


@pytest.fixture
async def bot(fake, tg_settings, scorer):
    """The bot (embedded) with a content classifier whose verdicts the test decides."""
    harness = Harness(fake, tg_settings, safety=safety_of(scorer))
    await harness.start()
    yield harness
    await harness.stop()


@pytest.fixture
def club(fake, alice) -> dict:
    """A group where Alice is an administrator (Bob is a member)."""
    group = fake.group()
    fake.statuses[(group["id"], alice["id"])] = "administrator"
    return group


async def said(fake, chat, user, text: str) -> str:
    asked = fake.send(chat, user, text=text)
    replies = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what=f"a reply to {text}")
    return replies[0].text


def member_checks(fake) -> int:
    return len(fake.calls_of("getChatMember"))


async def test_server_is_for_chat_administrators_and_their_answer_is_cached(bot, fake, alice, bob, club):
    rules = bot.service.rules
    here = Origin(platform="telegram", user_id=str(bob["id"]), chat_id=str(club["id"]))
    assert await said(fake, club, bob, "/server nsfw allow") == NOT_ADMIN
    assert (await rules(here)).nsfw.value == "block", "nothing changed"
    fake.statuses[(club["id"], bob["id"])] = "restricted"
    assert await said(fake, club, bob, "/server show") == NOT_ADMIN
    asked_before = member_checks(fake)
    assert "NSFW: block" in await said(fake, club, alice, "/server")
    assert "NSFW: spoiler" in await said(fake, club, alice, "/server nsfw spoiler")
    assert (await rules(here)).nsfw.value == "spoiler"
    assert member_checks(fake) == asked_before + 1, "one getChatMember for an admin's burst of commands"
    fake.statuses[(club["id"], bob["id"])] = "creator"  # a "no" isn't cached: promoted, he is an admin at once
    assert "Blocked users: none" in await said(fake, club, bob, "/server show")
    checks = member_checks(fake)
    assert await said(fake, fake.private(alice), alice, "/server show") == PRIVATE_ONLY
    assert member_checks(fake) == checks, "nobody is asked about a private chat"
    assert "Server settings:" in await said(fake, club, alice, "/server frobnicate"), "the usage line"
    (menu,) = [call for call in fake.calls_of("setMyCommands") if call.params.get("scope")]
    assert menu.params["scope"] == {"type": "all_chat_administrators"}
    assert "server" in [c["command"] for c in menu.params["commands"]]


async def test_help_shows_the_admin_lines_to_admins_only(bot, fake, alice, bob, club):
    everyone = await said(fake, club, bob, "/help")
    assert "/server" not in everyone
    admins = await said(fake, club, alice, "/help")
    assert admins.startswith(everyone) and "/server" in admins and "log [page]" in admins
    assert "/server" not in await said(fake, fake.private(alice), alice, "/help")


async def refusal(fake, chat, user, caption: str) -> str:
    asked = fake.send(chat, user, caption=caption, photo=picture())
    replies = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what=f"a reply to {caption}")
    return replies[0].text


async def test_each_rule_refuses_clearly_and_is_logged(bot, fake, alice, bob, club):
    await said(fake, club, alice, "/server ban sûr le pont")
    assert "isn't allowed here" in await refusal(fake, club, bob, "/remix dancing SUR LE PONT d'Avignon")
    await said(fake, club, alice, "/server models dreamy")
    assert "The model classic isn't allowed here. Allowed: dreamy." in await refusal(fake, club, bob, "/remix x")
    await said(fake, club, alice, "/server models all")
    await said(fake, club, alice, "/server quota 1")
    await remix(fake, club, bob, "/remix once")
    assert "today's 1 jobs here" in await refusal(fake, club, bob, "/remix twice")
    await said(fake, club, alice, "/server quota 0")
    hello = fake.send(club, bob, text="hello")
    asked = fake.send(club, alice, text="/server block", reply_to=hello)  # names him by replying to him
    (saved,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="the block saved")
    assert f"Blocked users: {bob['id']}" in saved.text
    assert await refusal(fake, club, bob, "/remix blocked?") == "⚠️ You can't use the bot here."
    await said(fake, club, alice, f"/server unblock {bob['id']}")
    await remix(fake, club, bob, "/remix welcome back")

    log = (await said(fake, club, alice, "/server log")).splitlines()
    assert log[0].startswith("Moderation log, page 1")
    reasons = [line.rsplit(" · ", 1)[1].split(":")[0] for line in log[1:]]
    assert reasons == ["blocked", "quota", "model", "banned"]
    assert all(f"@bob ({bob['id']})" in line for line in log[1:])
    assert await said(fake, club, bob, "/server log") == NOT_ADMIN, "the log is for admins"


async def test_flagged_results_come_behind_a_spoiler_where_the_policy_says_so(bot, fake, alice, bob, club, scorer):
    await said(fake, club, alice, "/server nsfw spoiler")
    scorer.flagging = True
    _, job_id, photo = await remix(fake, club, bob, "/remix flagged --n 1")
    assert photo.spoiler and photo.raw.get("has_media_spoiler")
    asked = fake.send(club, bob, caption="/remix two --n 2", photo=picture(seed=2))
    (pair,) = await new_jobs(fake, asked)
    album = await wait_results(fake, club["id"], pair, count=2)
    assert [m.spoiler for m in album] == [True, True], "every album item behind a spoiler"

    await said(fake, club, alice, "/server nsfw allow")
    _, _, shown = await remix(fake, club, bob, "/remix allowed")
    assert not shown.spoiler, "allow: as it is"

    await said(fake, club, alice, "/server nsfw block")
    assert await refusal(fake, club, bob, "/remix blocked") == f"⚠️ {SOURCE_FLAGGED}"
    scorer.flagging = False
    scorer.next.extend([False, True])  # the source passes, its result is flagged
    asked = fake.send(club, bob, caption="/remix held back", photo=picture(seed=3))
    (held,) = await new_jobs(fake, asked)
    final = await wait_final(fake, club["id"], held)
    assert "content filter held this result back" in final.text
    assert results(fake, club["id"], held) == [], "nothing flagged was sent"
    log = await said(fake, club, alice, "/server log")
    assert log.count(f"classifier 0.93: {LABEL}") == 1 and "1 of 1 results held back" in log
    assert job_id and not any(m.spoiler for m in fake.bot_messages(club["id"], "document"))


async def test_a_private_chat_uses_the_users_own_setting_safe_by_default(bot, fake, alice, club, scorer):
    chat = fake.private(alice)
    assert "NSFW: block" in await said(fake, chat, alice, "/settings nsfw")
    scorer.flagging = True
    assert await refusal(fake, chat, alice, "/remix mine") == f"⚠️ {SOURCE_FLAGGED}"
    assert "behind a spoiler" in await said(fake, chat, alice, "/settings nsfw spoiler")
    _, _, photo = await remix(fake, chat, alice, "/remix mine")
    assert photo.spoiler
    asked = fake.send(chat, alice, text="/history")
    (thumbnail,) = await fake.wait_for(lambda: fake.replies_to(asked, "photo"), what="the history's thumbnail")
    assert thumbnail.spoiler, "a flagged job's thumbnail is hidden too"
    assert "block, spoiler or allow" in await said(fake, chat, alice, "/settings nsfw maybe")
    assert "in a group its admins decide" in await said(fake, club, alice, "/settings nsfw allow")


async def test_an_admins_yes_is_kept_for_the_ttl_then_asked_again(fake, alice):
    """``Admins`` with a clock the test turns: a demoted admin keeps the rights at most ``ttl`` seconds."""
    now = [1000.0]
    group = fake.group()
    fake.statuses[(group["id"], alice["id"])] = "administrator"
    async with Bot(TOKEN, base_url=fake.base_url) as bot:
        admins = Admins(bot, ttl=60.0, clock=lambda: now[0])
        assert await admins.check(group["id"], alice["id"])
        fake.statuses[(group["id"], alice["id"])] = "member"  # demoted
        now[0] += 59.0
        assert await admins.check(group["id"], alice["id"]), "still trusted within the ttl"
        assert member_checks(fake) == 1
        now[0] += 2.0
        assert not await admins.check(group["id"], alice["id"]), "asked again after it"
        assert member_checks(fake) == 2
        assert not await admins.check(group["id"], alice["id"]) and member_checks(fake) == 3, "a no isn't kept"
