"""The main flow in arq mode: jobs go through real Redis to a real `remixbot worker` process.

Also what only a queue that can hold jobs shows deterministically: Cancel on a waiting job, the
per-user cap, and a job queued before a restart that a new bot process delivers (editing the
status message the old process sent).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.jobs import Action, Status
from tests.adapters.telegram.harness import (
    Harness,
    new_jobs,
    picture,
    press,
    remix,
    start_worker,
    status_message,
    toast,
    wait_final,
    wait_for_worker,
    wait_results,
)
from tests.integration.harness import stop


@pytest.fixture
async def worker(redis_url, tg_settings):
    process = start_worker(redis_url, tg_settings)
    try:
        await wait_for_worker(redis_url, process)
        yield process
    finally:
        stop(process)


async def test_photo_remix_and_reroll_through_a_worker(fake, tg_settings, redis_url, worker, alice):
    harness = Harness(fake, tg_settings, redis_url=redis_url)
    await harness.start()
    try:
        chat = fake.private(alice)
        asked, job_id, result = await remix(fake, chat, alice, "/remix watercolor --strength 0.6")
        record = await harness.service.history.job(job_id)
        assert record.status is Status.done and record.request.strength == 0.6
        assert result.image().size == (record.outputs[0].width, record.outputs[0].height)
        assert result.callback("reroll:") == f"reroll:{job_id}" and len(result.callbacks) == 11
        assert (await wait_final(fake, chat["id"], job_id)).text.startswith("✅ Done")

        _, reroll_id = await press(fake, alice, result, f"reroll:{job_id}")
        (rerolled,) = await wait_results(fake, chat["id"], reroll_id)
        child = await harness.service.history.job(reroll_id)
        assert child.action is Action.reroll and child.parent_job == job_id
        assert child.request.seed != record.request.seed
        assert replace(child.request, seed=None) == replace(record.request, seed=None)
        assert f"seed {child.request.seed}" in rerolled.text
    finally:
        await harness.stop()


async def test_waiting_jobs_cancel_cap_and_survive_a_restart(fake, tg_settings, redis_url, alice):
    settings = replace(tg_settings, limits=replace(tg_settings.limits, max_queued_per_user=2))
    harness = Harness(fake, settings, redis_url=redis_url)
    await harness.start()  # no worker yet: jobs wait in Redis
    chat = fake.private(alice)
    try:
        first = fake.send(chat, alice, caption="/remix warm", photo=picture(seed=1))
        (first_id,) = await new_jobs(fake, first)
        status = status_message(fake, chat["id"], first_id)
        assert status.text == "⏳ Queued — position 1"
        assert await toast(fake, alice, status, f"cancel:{first_id}") == "✖️ Cancelling…"
        assert (await wait_final(fake, chat["id"], first_id)).text == "✖️ Cancelled"
        assert (await harness.service.history.job(first_id)).status is Status.cancelled

        kept = fake.send(chat, alice, caption="/remix noir --seed 3", photo=picture(seed=2))
        (kept_id,) = await new_jobs(fake, kept)
        dropped = fake.send(chat, alice, caption="/remix vivid", photo=picture(seed=3))
        (dropped_id,) = await new_jobs(fake, dropped)
        assert status_message(fake, chat["id"], dropped_id).text == "⏳ Queued — position 2"
        over = fake.send(chat, alice, caption="/remix cool", photo=picture(seed=4))
        (refusal,) = await fake.wait_for(lambda: fake.replies_to(over), what="the cap")
        assert refusal.text.startswith("⚠️ You already have 2 jobs waiting; the limit is 2")

        cancel = fake.send(chat, alice, text=f"/cancel {dropped_id}")
        (answer,) = await fake.wait_for(lambda: fake.replies_to(cancel), what="the /cancel answer")
        assert answer.text == "✖️ Cancelled 1 job."
        await wait_final(fake, chat["id"], dropped_id)
    finally:
        await harness.stop()

    # the bot goes down with a job waiting; a worker appears; a new bot process comes up
    process = start_worker(redis_url, settings)
    try:
        await wait_for_worker(redis_url, process)
        await harness.start()
        try:
            (result,) = await wait_results(fake, chat["id"], kept_id)
            assert result.reply_to == kept.message_id
            status = await wait_final(fake, chat["id"], kept_id)  # sent by the first process
            assert status.text.startswith("✅ Done") and status.sent_text == "⏳ Queued — position 1"
            record = await harness.service.history.job(kept_id)
            assert record.request.seed == 3 and record.status is Status.done
            _, reroll_id = await press(fake, alice, result, f"reroll:{kept_id}")
            await wait_results(fake, chat["id"], reroll_id)
        finally:
            await harness.stop()
    finally:
        stop(process)
