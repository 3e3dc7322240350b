"""The core end to end in embedded mode: real service, real SQLite, real engine in-process."""

import io
from dataclasses import replace

import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot import images
from bot.actions import Button, Press
from bot.jobs import Action, Origin, Status
from bot.service import Refusal
from tests.integration.harness import Events

ALICE = Origin(platform="console", user_id="alice", chat_id="c1", user_name="Alice")
BOB = Origin(platform="console", user_id="bob", chat_id="c1", user_name="Bob")


@pytest.fixture
async def service(settings):
    service = await build_service(settings)
    yield service
    await close_service(service)


@pytest.fixture
def events(service):
    events = Events()
    service.listen("console", events)
    return events


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()


async def test_a_remix_reports_queued_running_progress_and_done_with_parameters(service, events, coffee):
    ticket = await service.submit(ALICE, "warm cinematic --strength 0.7 --seed 42 --n 2", coffee)
    assert ticket.position == 1 and ticket.job.request.seed == 42
    record = await events.done(ticket.job.id)
    statuses = [e.status for e in events.of(ticket.job.id)]
    assert statuses[0] is Status.running and statuses[-1] is Status.done
    steps = [e.step for e in events.of(ticket.job.id) if e.status is Status.running and e.total]
    assert steps == sorted(steps) and steps, "progress goes forward"
    assert record.status is Status.done and record.engine == "classic"
    assert [(o.index, o.seed) for o in record.outputs] == [(0, 42), (1, 43)]
    for out in record.outputs:
        data = out.path.read_bytes()
        assert Image.open(io.BytesIO(data)).size == (600, 400)
        params = images.parse_parameters(images.read_parameters(data))
        assert params["prompt"] == "warm cinematic" and params["seed"] == out.seed
        assert params["model"] == "classic" and params["strength"] == 0.7


async def test_the_same_seed_gives_the_same_bytes(service, events, coffee):
    first = await service.submit(ALICE, "noir --seed 5", coffee)
    second = await service.submit(ALICE, "noir --seed 5", coffee)
    a, b = await events.done(first.job.id), await events.done(second.job.id)
    assert a.outputs[0].path.read_bytes() == b.outputs[0].path.read_bytes()


async def test_reroll_vary_and_upscale_are_jobs_with_lineage(service, events, coffee):
    first = await events.done((await service.submit(ALICE, "sketch --strength 0.8 --seed 1", coffee)).job.id)
    reroll = await service.act(BOB, f"reroll:{first.id}")
    vary = await service.act(ALICE, Press(Button.varystrong, first.id, 0))
    upscale = await service.act(ALICE, Press(Button.upscale, first.id, 0))
    rerolled, varied, upscaled = [await events.done(t.job.id) for t in (reroll, vary, upscale)]

    assert rerolled.parent_job == first.id and rerolled.parent_output is None
    assert rerolled.request.seed != first.request.seed
    assert replace(rerolled.request, seed=1) == first.request  # same settings, new seed
    assert rerolled.user_id != first.user_id  # the new job belongs to whoever pressed

    assert varied.action is Action.vary and varied.parent_output == 0
    assert varied.request.strength == service.settings.vary_strength_strong

    assert upscaled.action is Action.upscale and upscaled.parent_job == first.id
    assert (upscaled.outputs[0].width, upscaled.outputs[0].height) == (1200, 800)
    assert [r.id for r in await service.history.lineage(upscaled.id)] == [upscaled.id, first.id]


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty.png", "empty"),
        ("not_an_image.png", "isn't an image"),
        ("truncated.jpg", ""),
        ("bomb_20000x20000.png", ""),
        ("tiny_4x4.png", "too small"),
    ],
)
async def test_bad_images_are_refused_with_a_clear_line_and_no_job(service, bad_images_dir, name, message):
    with pytest.raises(Refusal) as refused:
        await service.submit(ALICE, "warm", (bad_images_dir / name).read_bytes())
    text = str(refused.value)
    assert message.lower() in text.lower() and "Traceback" not in text and len(text) < 200
    assert await service.jobs(ALICE) == []


@pytest.mark.parametrize("name", ["animated.gif", "cmyk.jpg", "gray16.png", "rgba.png"])
async def test_awkward_but_valid_images_are_remixed(service, events, bad_images_dir, name):
    ticket = await service.submit(ALICE, "warm", (bad_images_dir / name).read_bytes())
    record = await events.done(ticket.job.id)
    assert record.status is Status.done
    assert Image.open(record.outputs[0].path).mode == "RGB"


async def test_request_errors_are_refusals(service, coffee):
    with pytest.raises(Refusal, match="strength must be between 0 and 1, got 1.7"):
        await service.submit(ALICE, "warm --strength 1.7", coffee)
    with pytest.raises(Refusal, match="--bogus"):
        await service.submit(ALICE, "warm --bogus 3", coffee)


async def test_a_png_made_by_us_offers_or_reuses_its_settings(service, events, coffee):
    made = await events.done((await service.submit(ALICE, "vintage --strength 0.45 --seed 9", coffee)).job.id)
    png = made.outputs[0].path.read_bytes()
    reused = await service.submit(ALICE, "", png)
    assert reused.job.request.prompt == "vintage" and reused.job.request.strength == 0.45
    assert reused.job.request.seed == 9
    offered = await service.submit(ALICE, "cool", png)
    assert offered.job.request.prompt == "cool" and "--strength 0.45" in offered.offer
    await events.done(reused.job.id)
    await events.done(offered.job.id)


async def test_saved_settings_are_the_defaults(service, events, coffee):
    await service.change_settings(ALICE, strength=0.25, num_images_per_prompt=2)
    ticket = await service.submit(ALICE, "warm", coffee)
    assert ticket.job.request.strength == 0.25 and ticket.job.request.num_images_per_prompt == 2
    with pytest.raises(Refusal, match="no model called"):
        await service.change_settings(ALICE, model="nope")
    await events.done(ticket.job.id)


async def test_queued_cap_and_rate_limit(settings, coffee):
    tight = replace(settings, limits=replace(settings.limits, max_queued_per_user=1, rate_per_minute=3))
    service = await build_service(tight)
    try:
        events = Events()
        service.listen("console", events)
        first = await service.submit(ALICE, "warm --n 4 --size 1536", coffee)
        with pytest.raises(Refusal, match="limit is 1"):
            await service.submit(ALICE, "warm", coffee)
        await events.done(first.job.id)
        for _ in range(2):
            await events.done((await service.submit(ALICE, "warm", coffee)).job.id)
        with pytest.raises(Refusal, match="3 requests a minute"):
            await service.submit(ALICE, "warm", coffee)
        await events.done((await service.submit(BOB, "warm", coffee)).job.id)  # others are not held up
    finally:
        await close_service(service)


async def test_cancel_a_queued_job(service, events, coffee):
    running = await service.submit(ALICE, "watercolor --n 4 --size 1536", coffee)
    queued = await service.submit(ALICE, "cartoon", coffee)
    assert queued.position >= 1
    assert await service.cancel(ALICE, queued.job.id) == [queued.job.id]
    record = await events.done(queued.job.id)
    assert record.status is Status.cancelled and record.outputs == ()
    assert (await events.done(running.job.id)).status is Status.done
    with pytest.raises(Refusal):
        await service.cancel(BOB, running.job.id)  # not Bob's


async def test_compare_runs_one_request_through_several_models(service, events, coffee):
    ticket = await service.submit(ALICE, "warm --seed 3 --compare fast", coffee)
    assert [job.request.model for job in ticket.jobs] == ["classic", "fast"]
    classic, fast = [await events.done(job.id) for job in ticket.jobs]
    assert classic.request.seed == fast.request.seed == 3
    assert classic.status is Status.done
    assert fast.status is Status.failed and "needs" in fast.error  # no weights here: said plainly


async def test_models_that_cannot_run_say_why(service):
    availability = await service.availability()
    assert availability["classic"] is None
    assert "needs weights" in availability["fast"] or "engine extra" in availability["fast"]


async def test_history_is_private(service, events, coffee):
    mine = await service.submit(ALICE, "warm", coffee)
    theirs = await service.submit(BOB, "cool", coffee)
    await events.done(mine.job.id)
    await events.done(theirs.job.id)
    assert [r.id for r in await service.jobs(ALICE)] == [mine.job.id]
    assert [r.id for r in await service.jobs(BOB)] == [theirs.job.id]


async def test_a_job_left_unfinished_whose_images_are_gone_fails_at_start_and_frees_the_cap(settings, coffee):
    from bot.history import History
    from bot.jobs import Job, Request, new_job_id

    history = await History.open(settings.data_dir)
    user = await history.user(ALICE)
    request = Request(prompt="warm", model="classic", strength=0.5, seed=1)
    job = Job(id=new_job_id(), action=Action.remix, request=request, image=coffee, origin=ALICE)
    await history.add_job(job, user.id)  # the last run died before it ran
    history.source_path(job.id).unlink()  # and its source is gone
    await history.close()

    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        record = await events.done(job.id)
        assert record.status is Status.failed and "images are gone" in record.error
        user = await service.history.user(ALICE)
        assert await service.history.count_jobs(user.id, Status.queued, Status.running) == 0
    finally:
        await close_service(service)
