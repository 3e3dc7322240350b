"""Fair share in both queues: the same submissions come out in the same fair order.

LocalQueue runs them on the real engine (in this process); ArqQueue scores them in a real Redis,
where the order is the sorted set arq takes jobs from (no worker needed to see it).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from PIL import Image

from bot import images
from bot.fairness import ORIGIN, UNIT, estimate
from bot.jobs import Action, Event, Job, Origin, Request, Status
from bot.models import load_models
from bot.queue.arq_queue import ArqQueue
from bot.queue.local import LocalQueue
from bot.queue.wire import queue_name
from engine.runner import Engine
from tests.integration.harness import noop_models

TINY = images.encode_png(Image.new("RGB", (64, 64), (120, 80, 40)))


def person(user: str, chat: str = "chat1", guild: str = "") -> Origin:
    return Origin(platform="telegram" if not guild else "discord", user_id=user, chat_id=chat, guild_id=guild)


ALICE, BOB, CAROL = person("alice"), person("bob"), person("carol")
GATE = person("gatekeeper", chat="elsewhere")


def job(job_id: str, origin: Origin, model: str = "classic") -> Job:
    request = Request(prompt="warm", model=model, strength=0.5, seed=1, num_inference_steps=1, guidance_scale=0.0)
    return Job(id=job_id, action=Action.remix, request=request, image=TINY, origin=origin, group="classic")


class Heard:
    """A queue listener that keeps every event."""

    def __init__(self):
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def started(self) -> list[str]:
        return [e.job_id for e in self.events if e.status is Status.running and e.total == 0]

    def finished(self) -> list[str]:
        return [e.job_id for e in self.events if e.status.finished]

    async def until(self, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            heard = [(e.job_id, e.status.value) for e in self.events]
            assert time.monotonic() < deadline, f"timed out; heard {heard}"
            await asyncio.sleep(0.01)
        return value


@pytest.fixture
def models(tmp_path):
    return load_models(noop_models(tmp_path, gate={"seconds": 0.5, "steps": 10}))


async def local_order(models, jobs: list[Job], weights=None) -> list[str]:
    """The order the LocalQueue runs ``jobs`` in, all queued behind a running gate job."""
    engine = Engine(models, "cpu")
    queue, heard = LocalQueue(engine, weights=weights), Heard()
    await queue.start(heard)
    try:
        await queue.submit(job("0gate", GATE, model="gate"))
        await heard.until(lambda: heard.started())
        for each in jobs:
            await queue.submit(each)
        await heard.until(lambda: len(heard.finished()) == len(jobs) + 1)
        assert set(heard.finished()) == {"0gate", *(j.id for j in jobs)}
        return heard.started()[1:]
    finally:
        await queue.close()
        engine.close()


async def arq_order(redis_url: str, jobs: list[Job], weights=None) -> list[str]:
    """The order arq will take ``jobs`` in from Redis (no worker runs them), after the same gate job."""
    queue = ArqQueue(redis_url, weights=weights)
    await queue.start(Heard())
    await queue.redis.flushdb()  # a fresh queue and fair-share state (the test database)
    try:
        for each in [job("0gate", GATE, model="gate"), *jobs]:
            await queue.submit(each)
        scores = await queue.redis.zrange(queue_name("classic"), 0, -1, withscores=True)
        assert all(score <= time.time() * 1000 for _, score in scores), "every job is eligible at once"
        running, waiting = await queue.order("classic")
        assert running == [] and waiting[0] == "0gate"
        return waiting[1:]
    finally:
        await queue.close()


async def both_orders(models, redis_url, jobs, weights=None) -> list[str]:
    local, arq = await local_order(models, jobs, weights), await arq_order(redis_url, jobs, weights)
    assert local == arq, "both queues follow one rule"
    return local


async def test_one_users_twenty_jobs_do_not_starve_anothers_single_job(models, redis_url):
    jobs = [job(f"j{i:02}", ALICE) for i in range(1, 21)] + [job("j21", BOB)]
    order = await both_orders(models, redis_url, jobs)
    assert order.index("j21") == 1  # right after Alice's first, not after all twenty


async def test_users_of_a_chat_take_turns(models, redis_url):
    jobs = [job(f"j{i:02}", ALICE) for i in range(1, 5)] + [job("j05", BOB), job("j06", BOB)] + [job("j07", CAROL)]
    order = await both_orders(models, redis_url, jobs)
    first_round = order[:3]
    assert set(first_round) == {"j01", "j05", "j07"}, "everyone's first job before anyone's second"
    assert order.index("j06") < order.index("j04"), "Bob's second before Alice's fourth"


async def test_servers_share_by_weight_not_by_how_many_users_they_have(models, redis_url):
    crowd = [person(f"fan{n}", guild="big") for n in range(3)]
    loner = person("loner", guild="small")
    # three users of one server take turns submitting 4 jobs each; then one user of another submits 12
    jobs = [job(f"c{3 * r + n:02}", crowd[n]) for r in range(4) for n in range(3)]
    jobs += [job(f"k{i:02}", loner) for i in range(12)]
    first = (await both_orders(models, redis_url, jobs))[:12]
    # by users alone the loner would get 3 of the first 12; by servers, about half
    assert sum(job_id.startswith("k") for job_id in first) >= 5, first

    weighted = await both_orders(
        models,
        redis_url,
        [job(f"m{i:02}", crowd[0]) for i in range(6)] + [job(f"n{i:02}", loner) for i in range(6)],
        weights={"discord:big": 2},
    )
    assert [job_id[0] for job_id in weighted[:6]].count("m") == 4, f"weight 2 gets two in three: {weighted}"


def test_the_estimate_adds_up_what_is_ahead_and_shares_it_among_workers():
    rates = {"fast": 2.0, "slow": 10.0}
    assert estimate("fast", running=[], waiting=[], rates=rates, workers=1) == 2.0
    assert estimate("fast", running=["slow"], waiting=["fast", "slow"], rates=rates, workers=1) == 5 + 12 + 2
    assert estimate("fast", running=["slow"], waiting=["fast", "slow"], rates=rates, workers=2) == 8.5 + 2
    assert estimate("fast", running=[], waiting=["unknown"], rates=rates, workers=1) == 4.0
    assert estimate("new", running=[], waiting=[], rates=rates, workers=1) is None
    assert estimate("fast", running=[], waiting=[], rates=rates, workers=0) is None


async def test_waiting_jobs_hear_their_position_and_an_eta_from_measured_rates(models):
    engine = Engine(models, "cpu", batch_size=1)  # one job at a time: the others wait in the queue
    queue, heard = LocalQueue(engine, announce_every=0.05), Heard()
    await queue.start(heard)
    try:
        await queue.submit(job("g1", GATE, model="gate"))
        await heard.until(lambda: heard.started())
        await queue.submit(job("first", ALICE))  # no classic job has run yet: no ETA
        first = await heard.until(lambda: [e for e in heard.events if e.job_id == "first" and e.position])
        assert first[0].position == 1 and first[0].eta_seconds is None
        await heard.until(lambda: "first" in heard.finished())
        rate = queue.rates()["classic"]
        assert rate > 0

        await queue.submit(job("g2", GATE, model="gate"))
        await heard.until(lambda: "g2" in heard.started())
        for name, origin in (("a", ALICE), ("b", BOB), ("c", CAROL)):
            await queue.submit(job(name, origin))

        def first_announcements() -> dict[str, Event] | None:
            heard_first = {}
            for event in heard.events:
                if event.job_id in ("a", "b", "c") and event.position:
                    heard_first.setdefault(event.job_id, event)
            return heard_first if len(heard_first) == 3 else None

        announced = await heard.until(first_announcements)
        assert [announced[name].position for name in "abc"] == [1, 2, 3]
        rates = queue.rates()  # the running gate counts as half a gate job
        for event in announced.values():
            expected = 0.5 * rates["gate"] + (event.position - 1) * rates["classic"] + rates["classic"]
            assert event.eta_seconds == pytest.approx(expected, abs=0.02)
        await heard.until(lambda: {"a", "b", "c"} <= set(heard.finished()))
    finally:
        await queue.close()
        engine.close()


def test_tags_start_far_in_the_past_and_a_lone_users_jobs_are_one_unit_apart():
    from bot.fairness import Share

    share = Share()
    tags = [share.tag(ALICE, head=None if i == 0 else ORIGIN) for i in range(3)]
    assert tags == [ORIGIN, ORIGIN + UNIT, ORIGIN + 2 * UNIT]
    assert share.tag(BOB, head=ORIGIN) == ORIGIN  # a newcomer joins the current round
    # all of it ran and the queue went idle: old debts are forgotten, both start level
    alice = share.tag(ALICE, head=None)
    assert share.tag(BOB, head=alice) == alice
