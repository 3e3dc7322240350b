"""Moderation in the service, on a real SQLite file with the classic engine in process.

The classifier's verdicts are injected at its boundary (the scorer a safety kind loads): no NSFW
picture is in the repository. Everything else is the real code: rules, refusals, the log, storage.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import replace

import pytest
from PIL import Image

from bot.history import History
from bot.jobs import Origin, Status, Verdict
from bot.models import ModelEntry, load_models
from bot.policy import Nsfw, Rules
from bot.queue.local import LocalQueue
from bot.service import Refusal, Service
from engine.runner import Engine
from engine.safety import Safety
from tests.integration.harness import Events

ANN = Origin(platform="discord", user_id="11", chat_id="500", guild_id="1", user_name="Ann")
BEN = Origin(platform="discord", user_id="12", chat_id="500", guild_id="1", user_name="Ben")
ANN_ELSEWHERE = Origin(platform="discord", user_id="11", chat_id="900", guild_id="2", user_name="Ann")
ANN_DM = Origin(platform="discord", user_id="11", chat_id="77", user_name="Ann")


class Scripted:
    """A scorer that says what the test wants: ``flags`` holds the next verdicts, safe once it runs out."""

    label = "scripted"

    def __init__(self) -> None:
        self.flags: collections.deque[bool] = collections.deque()
        self.seen = 0

    def classify(self, pictures: Sequence[Image.Image]) -> list[Verdict]:
        self.seen += len(pictures)
        verdicts = []
        for _ in pictures:
            flagged = self.flags.popleft() if self.flags else False
            verdicts.append(Verdict(flagged, 0.91 if flagged else 0.02, "BUTTOCKS_EXPOSED" if flagged else ""))
        return verdicts


@pytest.fixture
def scorer() -> Scripted:
    return Scripted()


@pytest.fixture
async def service(settings, scorer):
    models = load_models(settings.models_path)
    safety = Safety(ModelEntry(name="scripted", kind="nudenet"), scorer=scorer)
    engine = Engine(models, "cpu", safety=safety)
    history = await History.open(settings.data_dir)
    service = Service(settings, models, history, LocalQueue(engine), classifier=safety)
    await service.start()
    yield service
    await service.close()
    await history.close()


@pytest.fixture
def events(service) -> Events:
    events = Events()
    service.listen("discord", events)
    return events


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()


async def _log(service, origin=ANN):
    return [(entry.reason, entry.user_id, entry.detail) for entry in await service.moderation_log(origin)]


async def test_a_banned_word_in_prompt_or_negative_prompt_is_refused_and_logged(service, events, coffee):
    await service.change_rules(ANN, banned=("Café au lait",))
    with pytest.raises(Refusal, match="isn't allowed here"):
        await service.submit(ANN, "a CAFE AU LAIT, warm", coffee)
    with pytest.raises(Refusal, match="isn't allowed here"):
        await service.submit(ANN, "warm --negative café au lait", coffee)
    fine = await service.submit(ANN, "warm cafeteria au lait", coffee)  # not the whole phrase
    await events.done(fine.job.id)
    assert await _log(service) == [("banned", "11", "Café au lait")] * 2
    assert await service.moderation_log(ANN_ELSEWHERE) == []  # another server's log is its own


async def test_a_prompt_read_from_png_parameters_is_checked_too(service, events, coffee):
    made = await events.done((await service.submit(ANN, "vintage --seed 3", coffee)).job.id)
    await service.change_rules(ANN, banned=("vintage",))
    with pytest.raises(Refusal, match="isn't allowed here"):
        await service.submit(ANN, "", made.outputs[0].path.read_bytes())


async def test_derived_jobs_obey_the_rules_too(service, events, coffee):
    first = await events.done((await service.submit(ANN, "noir --seed 1", coffee)).job.id)
    await service.change_rules(ANN, banned=("noir",))
    with pytest.raises(Refusal, match="isn't allowed here"):
        await service.act(ANN, f"reroll:{first.id}")
    assert (await _log(service))[0][0] == "banned"


async def test_operator_ban_list_and_blocked_users_hold_everywhere(settings, scorer, images_dir):
    strict = replace(settings, banned_words=("gore",), blocked_users=("discord:12",))
    models = load_models(settings.models_path)
    history = await History.open(settings.data_dir)
    service = Service(strict, models, history, LocalQueue(Engine(models, "cpu")))
    await service.start()
    try:
        coffee = (images_dir / "coffee.png").read_bytes()
        with pytest.raises(Refusal, match="isn't allowed here"):
            await service.submit(ANN_DM, "GORE", coffee)
        with pytest.raises(Refusal, match="can't use the bot here"):
            await service.submit(BEN, "warm", coffee)
        assert await _log(service, ANN_DM) == [("banned", "11", "gore")]
        assert await _log(service, BEN) == [("blocked", "12", "")]
    finally:
        await service.close()
        await history.close()


async def test_blocked_user_disallowed_model_and_caps(service, events, coffee):
    await service.change_rules(ANN, blocked=("12",), models=("classic",), max_num_images=2, max_size=512)
    with pytest.raises(Refusal, match="can't use the bot here"):
        await service.submit(BEN, "warm", coffee)
    with pytest.raises(Refusal, match="The model fast isn't allowed here. Allowed: classic."):
        await service.submit(ANN, "warm --model fast", coffee)
    with pytest.raises(Refusal, match="--n is at most 2 here"):
        await service.submit(ANN, "warm --n 3", coffee)
    with pytest.raises(Refusal, match="--size is at most 512 here"):
        await service.submit(ANN, "warm --size 1024", coffee)
    await events.done((await service.submit(replace(BEN, guild_id="2"), "warm", coffee)).job.id)  # elsewhere: fine
    assert [reason for reason, *_ in await _log(service)] == ["limit", "limit", "model", "blocked"]


async def test_daily_quota_and_cooldown_count_this_server_only(service, events, coffee):
    await service.change_rules(ANN, daily_quota=2)
    for _ in range(2):
        await events.done((await service.submit(ANN, "warm", coffee)).job.id)
    with pytest.raises(Refusal, match="today's 2 jobs here"):
        await service.submit(ANN, "warm", coffee)
    await events.done((await service.submit(ANN_ELSEWHERE, "warm", coffee)).job.id)  # another server
    await service.change_rules(ANN, daily_quota=0, cooldown=600)
    with pytest.raises(Refusal, match="One moment"):
        await service.submit(ANN, "warm", coffee)
    assert [reason for reason, *_ in await _log(service)] == ["cooldown", "quota"]


async def test_rules_apply_at_once_and_outlive_the_process(service, settings):
    assert (await service.rules(ANN)).nsfw is Nsfw.block  # the default in servers
    changed = await service.change_rules(ANN, nsfw="spoiler", daily_quota=5)
    assert changed == Rules(nsfw=Nsfw.spoiler, daily_quota=5)
    reopened = await History.open(settings.data_dir)
    try:
        assert await reopened.rules("discord:1") == changed.to_data()
    finally:
        await reopened.close()
    with pytest.raises(Refusal, match="no model called"):
        await service.change_rules(ANN, models=("nope",))
    with pytest.raises(Refusal, match="not a valid setting|isn't a valid setting"):
        await service.change_rules(ANN, nsfw="sometimes")
    with pytest.raises(Refusal, match="for servers and groups"):
        await service.change_rules(ANN_DM, nsfw="allow")


async def test_a_private_chat_uses_the_users_own_nsfw_setting(service):
    assert (await service.rules(ANN_DM)).nsfw is Nsfw.block
    assert await service.change_nsfw(ANN_DM, "spoiler") is Nsfw.spoiler
    assert (await service.rules(ANN_DM)).nsfw is Nsfw.spoiler
    assert (await service.rules(ANN)).nsfw is Nsfw.block  # the server's rule, not hers
    with pytest.raises(Refusal, match="block, spoiler or allow"):
        await service.change_nsfw(ANN_DM, "maybe")


async def test_a_flagged_source_is_refused_under_block_only(service, events, scorer, coffee):
    scorer.flags.append(True)
    with pytest.raises(Refusal, match="content filter flagged it"):
        await service.submit(ANN, "warm", coffee)
    assert [entry.score for entry in await service.moderation_log(ANN)] == [0.91]
    await service.change_rules(ANN, nsfw="spoiler")
    seen = scorer.seen
    await events.done((await service.submit(ANN, "warm", coffee)).job.id)
    assert scorer.seen == seen + 1  # the output was checked; the source was not (spoiler lets it through)


async def test_a_flagged_output_under_block_is_never_stored(service, events, scorer, coffee, settings):
    scorer.flags.extend([False, True])  # the source, then the output
    ticket = await service.submit(ANN, "warm", coffee)
    record = await events.done(ticket.job.id)
    assert record.status is Status.failed and "content filter held this result back" in record.error
    assert record.outputs == ()
    assert not list((settings.data_dir / "outputs").glob(f"{ticket.job.id}-*"))
    (entry,) = await service.moderation_log(ANN)
    assert (entry.reason, entry.score, entry.detail) == (
        "classifier",
        0.91,
        "1 of 1 results held back; BUTTOCKS_EXPOSED",
    )


async def test_only_the_flagged_outputs_of_a_set_are_held_back(service, events, scorer, coffee, settings):
    scorer.flags.extend([False, False, True])  # the source, output 0, output 1
    record = await events.done((await service.submit(ANN, "warm --n 2", coffee)).job.id)
    assert record.status is Status.done and [o.index for o in record.outputs] == [0]
    assert "1 held back by the content filter" in record.note
    assert len(list((settings.data_dir / "outputs").glob(f"{record.id}-*"))) == 1


@pytest.mark.parametrize(("nsfw", "spoiler"), [("spoiler", True), ("allow", False)])
async def test_a_flagged_output_under_spoiler_or_allow_is_kept_and_marked(
    service, events, scorer, coffee, nsfw, spoiler
):
    await service.change_rules(ANN, nsfw=nsfw)
    scorer.flags.append(True)  # the output (no source check outside block)
    record = await events.done((await service.submit(ANN, "warm", coffee)).job.id)
    assert record.status is Status.done
    (output,) = record.outputs
    assert output.flagged and output.spoiler is spoiler
    assert await service.moderation_log(ANN) == []


async def test_the_log_pages_newest_first(service, coffee):
    await service.change_rules(ANN, banned=("one", "two", "three"))
    for word in ("one", "two", "three"):
        with pytest.raises(Refusal):
            await service.submit(ANN, word, coffee)
    first = await service.moderation_log(ANN, per_page=2)
    second = await service.moderation_log(ANN, page=1, per_page=2)
    assert [e.detail for e in first] == ["three", "two"] and [e.detail for e in second] == ["one"]
    assert all(e.user_name == "Ann" and e.chat_id == "500" for e in first + second)


async def test_buttons_reuse_the_checks_already_made(service, events, scorer, coffee):
    """A reroll's source was checked at submit, a result's by the engine: no second look, but a result
    flagged under spoiler can't be worked on once the server says block."""
    await service.change_rules(ANN, nsfw="spoiler")
    scorer.flags.append(True)  # the output
    flagged = await events.done((await service.submit(ANN, "warm", coffee)).job.id)
    await service.change_rules(ANN, nsfw="block")
    seen = scorer.seen
    reroll = await service.act(ANN, f"reroll:{flagged.id}")
    assert scorer.seen == seen  # queued without looking at the source again
    with pytest.raises(Refusal, match="content filter flagged it"):
        await service.act(ANN, f"upscale:{flagged.id}:0")
    await events.done(reroll.job.id)
    assert [entry.reason for entry in await service.moderation_log(ANN)] == ["classifier"]


async def test_without_a_classifier_in_the_bot_the_engine_checks_the_source_first(settings, scorer, coffee):
    """Redis mode with a classifier that needs torch: the bot process has none, so the jobs go marked
    and the engine (here in process, on a worker in Redis mode) refuses a flagged source; the log
    still says so. Under spoiler the source isn't looked at."""
    models = replace(load_models(settings.models_path), safety="nudenet")
    assert models.classifier is not None
    engine = Engine(models, "cpu", safety=Safety(ModelEntry(name="scripted", kind="nudenet"), scorer=scorer))
    history = await History.open(settings.data_dir)
    service = Service(settings, models, history, LocalQueue(engine))  # no classifier in the bot
    events = Events()
    service.listen("discord", events)
    await service.start()
    try:
        scorer.flags.append(True)  # the source
        ticket = await service.submit(ANN, "warm", coffee)
        assert ticket.job.screen_source
        record = await events.done(ticket.job.id)
        assert (
            record.status is Status.failed
            and record.error == "That picture can't be used here: the content filter flagged it."
        )
        assert record.outputs == () and scorer.seen == 1, "refused before it ran"
        assert await _log(service) == [("classifier", "11", "BUTTOCKS_EXPOSED")]
        await service.change_rules(ANN, nsfw="spoiler")
        spoiled = await service.submit(ANN, "warm", coffee)
        assert not spoiled.job.screen_source
        assert (await events.done(spoiled.job.id)).status is Status.done
    finally:
        await service.close()
        await history.close()


def test_the_engine_run_alone_screens_a_marked_source_too(settings, scorer, coffee):
    """``Engine.run_sync`` (one job on the calling thread) honours ``Job.screen_source`` like ``run``."""
    from bot.jobs import Action, Job, Request

    engine = Engine(
        load_models(settings.models_path), "cpu", safety=Safety(ModelEntry(name="s", kind="nudenet"), scorer=scorer)
    )
    try:
        job = Job(
            id="marked000001",
            action=Action.remix,
            request=Request(prompt="x", model="classic", strength=0.5, seed=1),
            image=coffee,
            origin=ANN,
            screen_source=True,
        )
        scorer.flags.append(True)
        refused = engine.run_sync(job, lambda step, total: None)
        assert refused.status is Status.failed and refused.refused == Verdict(True, 0.91, "BUTTOCKS_EXPOSED")
        assert refused.outputs == () and scorer.seen == 1
        ran = engine.run_sync(replace(job, screen_source=False), lambda step, total: None)
        assert ran.status is Status.done and ran.refused is None and scorer.seen == 2, "only its output was looked at"
    finally:
        engine.close()
