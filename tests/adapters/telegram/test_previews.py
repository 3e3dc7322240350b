"""Live previews on Telegram, through the real path: a worker's events (played on the Redis wire,
``tests/adapters/played_worker.py``) reach the real ArqQueue, the service, the core's status
tracker and the real PTB client, which shows them on the fake Bot API server."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.jobs import Event, Result, Status
from tests.adapters.played_worker import JPEG_MAGIC, PlayedWorker, jpeg, png
from tests.adapters.telegram.fake_server import ChatMessage, FakeTelegram
from tests.adapters.telegram.harness import (
    FAST,
    Harness,
    job_of_status,
    new_jobs,
    picture,
    results,
    status_message,
    wait_results,
)

EDIT_INTERVAL = 0.2
PREVIEW_INTERVAL = 0.6


def photo_status(fake: FakeTelegram, chat_id: int, job_id: str) -> ChatMessage | None:
    """The job's status message once it is a photo (it shows a preview)."""
    found = [m for m in fake.bot_messages(chat_id, "photo") if job_of_status(m) == job_id and not m.deleted]
    return found[0] if found else None


async def stored_place(harness: Harness, job_id: str, want: str, timeout: float = 5.0) -> str:
    """The status message's place in the history, once it is ``want`` (stored right after a move)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        place = (await harness.service.history.job(job_id)).status_message
        if place == want or asyncio.get_running_loop().time() > deadline:
            return place
        await asyncio.sleep(0.02)


async def first_preview(fake: FakeTelegram, worker: PlayedWorker, chat, user, caption: str):
    """``/remix caption`` asked in ``chat``, its job running and its first preview sent: (the asking
    message, the job id, the status message, now a photo)."""
    asked = fake.send(chat, user, caption=caption, photo=picture())
    (job_id,) = await new_jobs(fake, asked)
    await worker.publish(Event(job_id, Status.running))
    await worker.publish(Event(job_id, Status.running, step=1, total=4, preview=jpeg(10)))
    photo = await fake.wait_for(lambda: photo_status(fake, chat["id"], job_id), 10, "a photo status")
    return asked, job_id, photo


async def start(fake, tg_settings, redis_url) -> Harness:
    options = replace(FAST, edit_interval=EDIT_INTERVAL, preview_interval=PREVIEW_INTERVAL)
    harness = Harness(fake, tg_settings, options, redis_url=redis_url)
    await harness.start()  # no worker: the test plays it
    return harness


async def test_previews_swap_in_the_status_photo_throttled_and_the_result_replaces_them(
    fake, tg_settings, redis_url, alice
):
    worker = PlayedWorker(redis_url)
    await worker.beat("classic", ["classic", "dreamy"], seconds_per_job=95.0)
    harness = await start(fake, tg_settings, redis_url)
    try:
        chat = fake.private(alice)
        asked = fake.send(chat, alice, caption="/remix a watercolor harbor", photo=picture())
        (job_id,) = await new_jobs(fake, asked)
        text_status = status_message(fake, chat["id"], job_id)

        # the queue's ETA (from the worker's measured rate) shows on Telegram too
        await fake.wait_for(lambda: "ready in about 2 min" in text_status.text, 10, "the ETA")

        await worker.publish(Event(job_id, Status.running))
        started = asyncio.get_running_loop().time()
        for step in range(1, 21):  # a preview every 50 ms: far more than a chat may be shown
            await worker.publish(Event(job_id, Status.running, step=step, total=20, preview=jpeg(step * 12)))
            await asyncio.sleep(0.05)
        took = asyncio.get_running_loop().time() - started

        # a text message can't become a photo: a photo status took its place, answering the request
        photo = await fake.wait_for(lambda: photo_status(fake, chat["id"], job_id), 10, "a photo status")
        assert text_status.deleted, "the text status made room for the photo"
        assert photo.reply_to == asked.message_id and photo.callback("cancel:") == f"cancel:{job_id}"
        assert not photo.spoiler, "a private chat: the user's own picture, shown plainly"
        await fake.wait_for(lambda: photo.data == jpeg(240), 10, "the newest preview")
        assert photo.text == "🎨 Rendering 100%", "the caption follows the progress"
        where = f"{chat['id']}:{photo.message_id}"
        assert await stored_place(harness, job_id, where) == where, "a restart finds the photo"

        swaps = [c for c in fake.calls_of("editMessageMedia") if int(c.params["message_id"]) == photo.message_id]
        uploads = [c.files[c.params["media"]["media"].removeprefix("attach://")][0] for c in swaps]
        assert swaps and all(data.startswith(JPEG_MAGIC) for data in uploads), "each swap is a JPEG"
        # throttled: times are when the fake heard each call, so allow for a busy machine's jitter
        sent = [fake.calls_of("sendPhoto")[0].at] + [c.at for c in swaps]
        assert len(sent) <= took / PREVIEW_INTERVAL + 2, f"{len(sent)} previews in {took:.1f} s"
        assert all(b - a >= PREVIEW_INTERVAL / 2 for a, b in zip(sent, sent[1:], strict=False)), "throttled"
        edits = [c.at for c in fake.calls if c.method.startswith("editMessage") and c.status == 200]
        assert len(edits) <= (edits[-1] - edits[0]) / EDIT_INTERVAL + 2, f"{len(edits)} edits: over the limit"

        # the result replaces the preview: the same message, now the picture with its buttons
        result = png()
        await worker.finish(job_id, result)
        await fake.wait_for(lambda: photo.data == result, 20, "the result in the preview's place")
        assert f"job {job_id}" in photo.text and photo.callback("reroll:") == f"reroll:{job_id}"
        assert "cancel:" not in str(photo.callbacks)
        assert results(fake, chat["id"], job_id) == [photo], "no second photo: the preview became the result"
        assert (await harness.service.history.job(job_id)).status is Status.done
    finally:
        await worker.close()
        await harness.stop()


async def test_a_job_cancelled_from_its_preview_leaves_no_stale_preview(fake, tg_settings, redis_url, alice):
    harness = await start(fake, tg_settings, redis_url)
    worker = PlayedWorker(redis_url)
    try:
        chat = fake.private(alice)
        asked, job_id, photo = await first_preview(fake, worker, chat, alice, "/remix oil")

        query = fake.press(alice, photo, photo.callback("cancel:"))  # ✖️ Cancel on the preview
        answer = await fake.wait_for(lambda: fake.answer_to(query), 10, "the toast")
        assert answer.params.get("text") == "✖️ Cancelling…"
        await worker.deliver(Result(job_id, Status.cancelled))  # the worker stops at its next step
        await fake.wait_for(lambda: photo.deleted, 20, "the preview gone")
        final = await fake.wait_for(
            lambda: [m for m in fake.replies_to(asked, "text") if not m.deleted], 10, "the final status line"
        )
        assert [m.text for m in final] == ["✖️ Cancelled"] and not final[0].callbacks
        where = f"{chat['id']}:{final[0].message_id}"
        assert await stored_place(harness, job_id, where) == where, "the history follows the status message"
    finally:
        await worker.close()
        await harness.stop()


async def test_a_new_process_goes_on_in_the_photo_status_the_old_one_left(fake, tg_settings, redis_url, alice):
    worker = PlayedWorker(redis_url)
    harness = await start(fake, tg_settings, redis_url)
    try:
        chat = fake.private(alice)
        asked, job_id, photo = await first_preview(fake, worker, chat, alice, "/remix ink")
        where = f"{chat['id']}:{photo.message_id}"
        assert await stored_place(harness, job_id, where) == where

        await harness.restart()  # a new process: it knows the photo only from the history
        await worker.publish(Event(job_id, Status.running, step=2, total=4))
        await fake.wait_for(lambda: photo.text == "🎨 Rendering 50%", 10, "progress in the photo's caption")
        await worker.publish(Event(job_id, Status.running, step=3, total=4, preview=jpeg(30)))
        await fake.wait_for(lambda: photo.data == jpeg(30), 10, "the preview swapped in place")
        assert not photo.deleted and len(fake.bot_messages(chat["id"], "photo")) == 1

        result = png()
        await worker.finish(job_id, result)
        await fake.wait_for(lambda: photo.data == result, 20, "the result in the preview's place")
        assert results(fake, chat["id"], job_id) == [photo]
    finally:
        await worker.close()
        await harness.stop()


async def test_a_job_that_ends_right_after_a_restart_leaves_no_stale_preview(fake, tg_settings, redis_url, alice):
    worker = PlayedWorker(redis_url)
    harness = await start(fake, tg_settings, redis_url)
    try:
        chat = fake.private(alice)
        asked, job_id, photo = await first_preview(fake, worker, chat, alice, "/remix chalk")
        where = f"{chat['id']}:{photo.message_id}"
        assert await stored_place(harness, job_id, where) == where

        await harness.restart()
        result = png()
        await worker.finish(job_id, result)  # no progress in between: the new process never saw the photo
        (shown,) = await wait_results(fake, chat["id"], job_id)
        assert shown.data == result and shown.callback("reroll:") == f"reroll:{job_id}"
        # the stale preview is gone: replaced by the result, or deleted with the result posted anew
        assert photo.deleted or photo is shown
        live = [m for m in fake.bot_messages(chat["id"]) if not m.deleted]
        assert not [m.text for m in live if "Rendering" in m.text or f"cancel:{job_id}" in m.callbacks]
    finally:
        await worker.close()
        await harness.stop()


async def test_in_a_group_a_preview_is_behind_a_spoiler_until_the_screened_result(fake, tg_settings, redis_url, alice):
    worker = PlayedWorker(redis_url)
    harness = await start(fake, tg_settings, redis_url)
    try:
        group = fake.group()
        asked, job_id, photo = await first_preview(fake, worker, group, alice, "/remix pastel")
        assert photo.spoiler, "the content filter sees results, not previews"
        await worker.publish(Event(job_id, Status.running, step=3, total=4, preview=jpeg(30)))
        await fake.wait_for(lambda: photo.data == jpeg(30), 10, "the next preview")
        assert photo.spoiler

        result = png()
        await worker.finish(job_id, result)
        await fake.wait_for(lambda: photo.data == result, 20, "the result in the preview's place")
        assert not photo.spoiler, "the screened result, not flagged, shows plainly"
    finally:
        await worker.close()
        await harness.stop()
