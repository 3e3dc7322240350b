"""Manners: bad pictures, a 429 storm, two users at once, limits, throttled edits, harmless
"message is not modified", and errors that reach the chat as one friendly line (never the token)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from adapters.telegram import render
from adapters.telegram.options import Options
from bot.jobs import Status
from tests.adapters.telegram.fake_server import NOT_MODIFIED
from tests.adapters.telegram.harness import (
    FAST,
    TOKEN,
    Harness,
    job_of_status,
    new_jobs,
    picture,
    remix,
    wait_final,
    wait_results,
)

UNREADABLE = {  # fixture → what the one-line refusal says
    "empty.png": "empty",
    "not_an_image.png": "isn't an image",
    "bomb_20000x20000.png": "too large",
    "tiny_4x4.png": "too small",
    "truncated.jpg": "damaged",
}
ODD_BUT_FINE = ("animated.gif", "cmyk.jpg", "gray16.png", "rgba.png")


async def first_answer(fake, asked):
    """The bot's first reply to ``asked``: a refusal ("⚠️ …") or a status message."""
    replies = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what=f"an answer to {asked.text}")
    return replies[0]


@pytest.mark.parametrize("as_document", [False, True], ids=["photo", "document"])
async def test_bad_pictures_get_one_friendly_line_and_odd_ones_work(bot, fake, alice, bad_images_dir, as_document):
    chat = fake.private(alice)
    for name in sorted(UNREADABLE) + list(ODD_BUT_FINE):
        data = (bad_images_dir / name).read_bytes()
        kind = {"document": data, "filename": name, "mime_type": "image/png"} if as_document else {"photo": data}
        asked = fake.send(chat, alice, caption="/remix warm", **kind)
        answer = await first_answer(fake, asked)
        if name in UNREADABLE:
            assert answer.text.startswith("⚠️ ") and UNREADABLE[name] in answer.text, (name, answer.text)
            assert "\n" not in answer.text and "Traceback" not in answer.text and TOKEN not in answer.text
            assert job_of_status(answer) is None
        else:
            job_id = job_of_status(answer)
            assert job_id, (name, answer.text)
            (result,) = await wait_results(fake, chat["id"], job_id)
            assert result.image().mode == "RGB", name
    jobs = await bot.service.jobs(bot_origin(alice, chat), per_page=50)
    assert len(jobs) == len(ODD_BUT_FINE) and all(job.status is Status.done for job in jobs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")  # PTB's own RetryAfter.__init__
async def test_a_429_storm_is_ridden_out(bot, fake, alice):
    chat = fake.private(alice)
    fake.fail_next("*", 3, retry_after=1)  # the next three sends or edits: Too Many Requests
    asked, job_id, result = await remix(fake, chat, alice, "/remix watercolor")
    assert len([c for c in fake.calls if c.status == 429]) == 3
    status = await wait_final(fake, chat["id"], job_id)
    assert status.text.startswith("✅")
    assert len(fake.bot_messages(chat["id"], "photo")) == 1  # retried, never duplicated
    assert not any(render.FRIENDLY_ERROR in m.text for m in fake.bot_messages(chat["id"]))


async def test_two_users_at_once_each_get_their_own(bot, fake, alice, bob):
    group = fake.group()
    chats = {alice["id"]: fake.private(alice), bob["id"]: fake.private(bob)}
    # all four requests arrive in the same getUpdates batch
    asks = [
        fake.send(chats[alice["id"]], alice, caption="/remix alice private", photo=picture(seed=1)),
        fake.send(chats[bob["id"]], bob, caption="/remix bob private", photo=picture(seed=2)),
        fake.send(group, alice, caption="/remix alice group", photo=picture(seed=3)),
        fake.send(group, bob, caption="/remix bob group", photo=picture(seed=4)),
    ]
    jobs = await asyncio.gather(*(new_jobs(fake, asked) for asked in asks))
    for asked, (job_id,) in zip(asks, jobs, strict=True):
        (result,) = await wait_results(fake, asked.chat_id, job_id)
        owner = "alice" if asked.sender_id == alice["id"] else "bob"
        assert result.reply_to == asked.message_id and result.chat_id == asked.chat_id
        assert asked.text.removeprefix("/remix ") in result.text and owner in result.text
        record = await bot.service.history.job(job_id)
        assert record.origin.user_id == str(asked.sender_id)
    for user in (alice, bob):
        photos = fake.bot_messages(chats[user["id"]]["id"], "photo")
        name = user["first_name"].lower()
        assert len(photos) == 1 and name in photos[0].text
    assert len(fake.bot_messages(group["id"], "photo")) == 2


async def test_rate_limit_reply_is_clear(fake, tg_settings, alice):
    settings = replace(tg_settings, limits=replace(tg_settings.limits, rate_per_minute=2))
    harness = Harness(fake, settings)
    await harness.start()
    try:
        chat = fake.private(alice)
        for i in range(2):
            await remix(fake, chat, alice, f"/remix warm {i}")
        third = fake.send(chat, alice, caption="/remix warm again", photo=picture())
        answer = await first_answer(fake, third)
        assert answer.text.startswith("⚠️ Easy there — 2 requests a minute at most")
    finally:
        await harness.stop()


async def test_status_edits_are_throttled(fake, tg_settings, alice):
    harness = Harness(fake, tg_settings, replace(FAST, edit_interval=3600))
    await harness.start()
    try:
        chat = fake.private(alice)
        _, job_id, _ = await remix(fake, chat, alice, "/remix watercolor", picture())
        status = await wait_final(fake, chat["id"], job_id)
        # progress came (several steps), but the only edit was the final one
        assert status.edits == [status.text] and status.text.startswith("✅")
    finally:
        await harness.stop()


async def test_message_not_modified_is_not_an_error(bot, fake, alice, caplog):
    chat = fake.private(alice)
    fake.fail_next("editMessageText", 2, code=400, description=NOT_MODIFIED)
    with caplog.at_level(logging.INFO):
        _, job_id, _ = await remix(fake, chat, alice, "/remix warm")
    assert len([c for c in fake.calls if c.status == 400]) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(render.FRIENDLY_ERROR in m.text for m in fake.bot_messages(chat["id"]))


async def test_errors_are_one_friendly_line_and_the_token_never_shows(fake, tg_settings, alice, caplog):
    caplog.set_level(logging.DEBUG)
    harness = Harness(fake, tg_settings)
    await harness.start()  # PTB logs its URLs (token included) at DEBUG while starting
    try:
        chat = fake.private(alice)
        await remix(fake, chat, alice, "/remix warm")

        fake.fail_next("getFile", code=400, description="Bad Request: wrong file_id")
        broken = fake.send(chat, alice, caption="/remix warm", photo=picture())
        answer = await first_answer(fake, broken)
        assert answer.text == "⚠️ I couldn't fetch that picture from Telegram; please send it again."

        # an unexpected failure inside a handler: the details to the log, one line to the chat
        fake.fail_next("sendMessage", code=400, description="Bad Request: something unexpected")
        asked = fake.send(chat, alice, text="/models")
        (sorry,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="the friendly line")
        assert sorry.text == render.FRIENDLY_ERROR
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    finally:
        await harness.stop()
    assert any("Set Bot API URL" in r.getMessage() for r in caplog.records)  # the URL line was logged…
    assert not [r.getMessage() for r in caplog.records if TOKEN in r.getMessage()]  # …without the token
    assert not [m for m in fake.messages.values() if TOKEN in m.text]


def bot_origin(user: dict, chat: dict):
    from bot.jobs import Origin

    return Origin(platform="telegram", user_id=str(user["id"]), chat_id=str(chat["id"]))


def test_options_defaults_respect_telegram_limits():
    options = Options()
    assert options.edit_interval >= 1.0 and options.action_interval <= 5.0 and options.max_retries >= 1
