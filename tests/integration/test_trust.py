"""The core's trust rules end to end (embedded mode, real SQLite and engine): access on every use
case, Delete, limits on derived jobs and --compare, stored sources, owner-only files, hostile inputs."""

from __future__ import annotations

import asyncio
import io
import stat
from dataclasses import replace

import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot.actions import Button, Press
from bot.jobs import Origin, Status
from bot.service import Refusal
from tests.fixtures.hostile import huge_jpeg, text_bomb_png
from tests.integration.harness import Events

GROUP = "-1001"
ALICE = Origin("telegram", "alice", chat_id=GROUP, user_name="Alice")
BOB = Origin("telegram", "bob", chat_id=GROUP, user_name="Bob")
MALLORY = Origin("telegram", "mallory", chat_id="-2002", user_name="Mallory")  # another group
ALICE_DM = Origin("telegram", "alice", chat_id="alice", private=True)
MALLORY_DM = Origin("telegram", "mallory", chat_id="mallory", private=True)
NOT_HERE = "isn't available here"


@pytest.fixture
def events(service):
    events = Events()
    service.listen("telegram", events)
    return events


async def test_every_use_case_refuses_a_job_from_another_chat(service, events, coffee):
    done = await events.done((await service.submit(ALICE, "secret sauce --seed 4", coffee)).job.id)
    for caller in (MALLORY, MALLORY_DM):
        for attempt in (
            service.job(caller, done.id),
            service.info(caller, done.id),
            service.act(caller, Press(Button.reroll, done.id)),
            service.act(caller, Press(Button.upscale, done.id, 0)),
            service.before_after(caller, done.id, 0),
            service.original(caller, done.id, 0),
            service.cancel(caller, done.id),
            service.delete(caller, done.id, shown_in=done.id, is_admin=True),
        ):
            with pytest.raises(Refusal) as refused:
                await attempt
            assert NOT_HERE in str(refused.value) and "secret" not in str(refused.value)
    with pytest.raises(Refusal, match=NOT_HERE):  # an unknown job reads the same: no oracle
        await service.job(MALLORY, "0123456789ab")
    assert len(await service.jobs(ALICE)) == 1 and await service.jobs(MALLORY) == [], "nothing was made"
    # in the group anyone may look and act; the new job is theirs
    assert (await service.info(BOB, done.id)).id == done.id
    assert (await service.act(BOB, Press(Button.reroll, done.id))).job.origin == BOB
    assert (await service.original(ALICE_DM, done.id, 0))[1] == done.outputs[0].path.read_bytes()


async def test_a_dm_job_stays_in_the_dm(service, events, coffee):
    private = await events.done((await service.submit(ALICE_DM, "diary", coffee)).job.id)
    public = await events.done((await service.submit(ALICE, "poster", coffee)).job.id)
    with pytest.raises(Refusal, match=NOT_HERE):
        await service.act(ALICE, Press(Button.reroll, private.id))  # its owner, but in the group
    assert (await service.info(ALICE, None)).id == public.id, "bare /info: the newest job seen here"
    latest_private = await events.done((await service.submit(ALICE_DM, "diary 2", coffee)).job.id)
    assert (await service.info(ALICE, None)).id == public.id, "never the newer DM job"
    assert (await service.info(ALICE_DM, None)).id == latest_private.id
    with pytest.raises(Refusal, match="no jobs here"):
        await service.info(BOB, None)


async def test_delete_takes_the_owner_or_an_admin_and_removes_the_files(service, events, coffee):
    done = await events.done((await service.submit(ALICE, "to delete", coffee)).job.id)
    files = [service.history.source_path(done.id), done.outputs[0].path]
    with pytest.raises(Refusal, match="Only the person who asked"):
        await service.delete(BOB, done.id, shown_in=done.id)
    with pytest.raises(Refusal, match=NOT_HERE):  # the button pressed on another job's message
        await service.delete(ALICE, done.id, shown_in="0123456789ab")
    assert all(path.exists() for path in files)
    await service.delete(BOB, done.id, shown_in=done.id, is_admin=True)
    assert not any(path.exists() for path in files)
    with pytest.raises(Refusal, match="was deleted"):
        await service.act(BOB, Press(Button.reroll, done.id))


async def test_limits_hold_on_derived_jobs(settings, coffee):
    limits = replace(settings.limits, max_output_pixels=1_000_000, max_image_pixels=900_000)
    service = await build_service(replace(settings, limits=limits))
    events = Events()
    service.listen("telegram", events)
    try:
        by_four = await events.done((await service.submit(ALICE, "warm --scale 4", coffee)).job.id)  # 600×400
        with pytest.raises(Refusal, match="2400×1600 picture; the largest I make is 1 megapixels"):
            await service.act(ALICE, Press(Button.upscale, by_four.id, 0))
        first = await events.done((await service.submit(ALICE, "warm", coffee)).job.id)
        up = await events.done((await service.act(ALICE, Press(Button.upscale, first.id, 0))).job.id)
        assert (up.outputs[0].width, up.outputs[0].height) == (1200, 800)
        for button in (Button.vary, Button.upscale, Button.fixface, Button.animate):  # 0.96 MP: over the input limit
            with pytest.raises(Refusal, match=r"too large \(1200×800\)"):
                await service.act(ALICE, Press(button, up.id, 0))
    finally:
        await close_service(service)


async def test_compare_is_queued_whole_or_not_at_all(settings, tmp_path, coffee):
    models = tmp_path / "models.toml"
    models.write_text(
        "".join(f'[models.{name}]\nkind = "classic"\ngroup = "classic"\n' for name in ("classic", "a", "b", "c"))
    )
    limits = replace(settings.limits, max_queued_per_user=3)
    service = await build_service(replace(settings, limits=limits, models_path=models))
    events = Events()
    service.listen("telegram", events)
    try:
        waiting = await service.submit(ALICE, "x --n 4 --size 1536", coffee)
        with pytest.raises(Refusal, match="That makes 4 jobs"):
            await service.submit(ALICE, "y --compare a,b,c", coffee)
        assert [r.id for r in await service.jobs(ALICE)] == [waiting.job.id], "not one job of the set"
        await events.done(waiting.job.id)
        ticket = await service.submit(ALICE, "y --compare a,b", coffee)
        assert len(ticket.jobs) == 3
    finally:
        await close_service(service)


async def test_stored_sources_are_kept_at_the_largest_working_size_and_owner_only(service, events):
    ticket = await service.submit(ALICE, "big", huge_jpeg(4000, 3000))
    side = max(service.settings.limits.max_size, *(entry.size for entry in service.models))
    with Image.open(service.history.source_path(ticket.job.id)) as stored:
        assert stored.size == (side, side * 3 // 4)
    record = await events.done(ticket.job.id)
    data_dir = service.history.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in [
        data_dir / "remixbot.sqlite3",
        service.history.source_path(record.id),
        *(out.path for out in record.outputs),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_hostile_inputs_never_hold_up_another_users_remix(service, events, coffee):
    """The 1 MB-text PNG and a 40 MP photo arrive while Bob remixes a small picture: his result is
    delivered, right, whatever they cost (their decoding and parsing run off the event loop)."""
    hostile = [
        asyncio.create_task(service.submit(MALLORY, "", text_bomb_png())),
        asyncio.create_task(service.submit(MALLORY_DM, "huge", huge_jpeg())),
    ]
    small = await service.submit(BOB, "noir --seed 9", coffee)
    record = await events.done(small.job.id)
    assert record.status is Status.done and record.origin == BOB
    with Image.open(io.BytesIO(record.outputs[0].path.read_bytes())) as image:
        assert image.size == (600, 400) and image.mode == "RGB"
    results = await asyncio.gather(*hostile, return_exceptions=True)
    for result in results:
        assert not isinstance(result, Exception) or isinstance(result, Refusal), result
    bomb = results[0]
    assert not isinstance(bomb, BaseException) and len(bomb.job.request.prompt) <= 1000


async def test_settings_changes_go_through_the_core(service):
    assert (await service.change_setting(ALICE, "strength", "0.4")).strength == 0.4
    assert (await service.change_setting(ALICE, "strength", "auto")).strength is None
    assert (await service.change_setting(ALICE, "n", "2")).num_images_per_prompt == 2
    for key, value, why in (
        ("n", "nan", "isn't a setting"),
        ("strength", "nan", "between 0 and 1"),
        ("x", "1", "Settings are"),
    ):
        with pytest.raises(Refusal, match=why):
            await service.change_setting(ALICE, key, value)


async def test_retention_removes_old_files_and_a_press_says_they_expired(service, events, coffee):
    import time

    old = await events.done((await service.submit(ALICE, "old", coffee)).job.id)
    assert await service.sweep() == 0, "nothing is 30 days old yet"
    waiting = await service.submit(ALICE, "fresh --n 4 --size 1536", coffee)
    swept = await service.sweep(now=time.time() + 31 * 86400)
    assert swept >= 1 and not service.history.source_path(old.id).exists()
    assert not old.outputs[0].path.exists() and (await service.history.job(old.id)).removed == "expired"
    assert (
        service.history.source_path(waiting.job.id).exists()
        or (await service.history.job(waiting.job.id)).status.finished
    ), "a job still under way keeps its files"
    with pytest.raises(Refusal, match="expired"):
        await service.act(ALICE, Press(Button.reroll, old.id))
    with pytest.raises(Refusal, match="expired"):
        await service.original(ALICE, old.id, 0)


async def test_forget_needs_the_users_own_confirmation_then_deletes_everything(service, events, coffee):
    done = await events.done((await service.submit(ALICE, "mine", coffee)).job.id)
    theirs = await events.done((await service.submit(BOB, "theirs", coffee)).job.id)
    asked = await service.forget(ALICE)
    assert asked.jobs == 1 and len(asked.code) == 12 and not asked.done
    with pytest.raises(Refusal, match="isn't valid"):
        await service.forget(BOB, asked.code)  # someone else pressing her button
    with pytest.raises(Refusal, match="isn't valid"):
        await service.forget(ALICE, "0123456789ab")
    assert (await service.forget(ALICE, asked.code)).jobs == 1
    assert await service.history.job(done.id) is None and not done.outputs[0].path.exists()
    assert not service.history.source_path(done.id).exists()
    assert await service.jobs(ALICE) == [] and (await service.history.job(theirs.id)) is not None
    with pytest.raises(Refusal, match="isn't valid"):
        await service.forget(ALICE, asked.code), "a code works once"


async def test_a_result_over_the_output_cap_is_not_kept(settings, coffee):
    service = await build_service(replace(settings, limits=replace(settings.limits, max_output_pixels=1_000_000)))
    events = Events()
    service.listen("telegram", events)
    try:
        record = await events.done((await service.submit(ALICE, "big --size 1536", coffee)).job.id)  # 1536×1024
        assert record.status is Status.failed and "larger than 1 megapixels" in record.error
        assert record.outputs == () and list((service.history.data_dir / "outputs").iterdir()) == []
    finally:
        await close_service(service)


async def test_the_console_never_lets_text_steer_the_terminal(service, images_dir, tmp_path):
    from adapters.console import Console

    out = io.StringIO()
    console = Console(service, stdout=out)
    picture = tmp_path / "in.png"
    picture.write_bytes((images_dir / "coffee.png").read_bytes())
    await console.handle(f"{picture} a \x1b[2J\x1b]0;pwned\x07red\x07 cat --seed 1")
    ticket_id = out.getvalue().split()[1]
    record = await service.history.job(ticket_id)
    assert record.request.prompt == "a red cat"
    console.say(f"echo {chr(27)}[31mraw{chr(7)}")
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue() and "echo raw" in out.getvalue()
