"""What remixbot relies on in arq, checked against the installed arq and a real Redis.

pyproject bounds arq (``>=0.26,<0.29``); before widening that range, run these. bot.queue.arq_queue
and engine.worker depend on each point below: a past ``_defer_until`` is the fair-share score and
runs at once; a claimed job keeps its place in the queue (bot.queue.wire.ORDER_SCRIPT tells running
from waiting by the in-progress key); the in-progress key lives ``in_progress_timeout_s`` (the
worker's lease); a job id is unique while its job key exists; ``job_try`` counts runs through the
retry key; ``keep_result=0`` leaves nothing behind; and ``job_serializer``/``job_deserializer`` are
what arq uses for every payload (never pickle).
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import arq
import msgpack
import pytest
from arq import create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.worker import Worker, func

from bot.models import load_models
from bot.queue.wire import RUN_JOB, arq_job_key, in_progress_key, pack_arq, redis_settings, unpack_arq
from engine.runner import Engine
from engine.worker import build_workers
from tests.bot.queue.test_wire import Booby

QUEUE = "remixbot:queue:contract"
LEASE = 5.0


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Recorder:
    """A stand-in for engine.worker.run_job that notes what arq handed it and what Redis held meanwhile."""

    def __init__(self):
        self.calls: list[dict[str, Any]] = []

    async def run_job(self, ctx: dict[str, Any], data: object = None, *, unreadable: str = "") -> str:
        redis, job_id = ctx["redis"], ctx["job_id"]
        self.calls.append(
            {
                "job_id": job_id,
                "job_try": ctx["job_try"],
                "data": data,
                "unreadable": unreadable,
                "claim": await redis.get(in_progress_key(job_id)),
                "claim_ms": await redis.pttl(in_progress_key(job_id)),
                "still_queued": await redis.zscore(QUEUE, job_id) is not None,
            }
        )
        return "done"


async def run_until_empty(redis_url: str, recorder: Recorder) -> None:
    worker = Worker(
        functions=[func(recorder.run_job, name=RUN_JOB)],
        queue_name=QUEUE,
        redis_settings=redis_settings(redis_url),
        burst=True,
        poll_delay=0.01,
        max_jobs=1,
        keep_result=0,
        job_serializer=pack_arq,
        job_deserializer=unpack_arq,
        handle_signals=False,
    )
    worker.in_progress_timeout_s = LEASE  # what engine.worker.build_workers does
    try:
        await worker.main()
    finally:
        await worker.close()


@pytest.fixture
async def pool(redis_url):
    pool = await create_pool(redis_settings(redis_url), job_serializer=pack_arq, job_deserializer=unpack_arq)
    yield pool
    await pool.aclose()


def test_the_installed_arq_is_in_the_range_we_pin():
    major, minor = (int(part) for part in arq.VERSION.split(".")[:2])
    assert (major, minor) >= (0, 26) and (major, minor) < (0, 29), arq.VERSION


async def test_past_scores_set_the_order_claimed_jobs_keep_their_place_and_nothing_lingers(pool, redis_url):
    base = int(datetime.now(tz=UTC).timestamp() * 1000) - 3_600_000  # an hour ago: eligible at once
    for job_id, offset in [("late", 300), ("early", 100), ("middle", 200)]:
        job = await pool.enqueue_job(
            RUN_JOB, {"n": job_id}, _job_id=job_id, _queue_name=QUEUE, _defer_until=at(base + offset), _expires=60
        )
        assert job is not None
    assert await pool.zrange(QUEUE, 0, -1, withscores=True) == [
        (b"early", base + 100),
        (b"middle", base + 200),
        (b"late", base + 300),
    ]
    # a job id is unique while its job key exists (ArqQueue.submit of a known job is a no-op)
    assert await pool.enqueue_job(RUN_JOB, {}, _job_id="early", _queue_name=QUEUE) is None
    payload = await pool.get(arq_job_key("early"))
    assert not payload.startswith(b"\x80"), "a pickle"
    assert msgpack.unpackb(payload)["a"] == [{"n": "early"}]
    assert 0 < await pool.pttl(arq_job_key("early")) <= 60_000  # _expires is the job key's TTL

    recorder = Recorder()
    await run_until_empty(redis_url, recorder)
    assert [call["job_id"] for call in recorder.calls] == ["early", "middle", "late"]
    for call in recorder.calls:
        assert call["data"] == {"n": call["job_id"]} and call["unreadable"] == "" and call["job_try"] == 1
        assert call["claim"] == b"1" and 0 < call["claim_ms"] <= LEASE * 1000  # the lease we renew
        assert call["still_queued"], "a running job stays in its queue until it ends"
    prefixes = (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix)
    assert [key for key in await pool.keys("*") if key.decode().startswith(prefixes)] == []
    assert await pool.zcard(QUEUE) == 0


async def test_job_try_counts_runs_through_the_retry_key(pool, redis_url):
    await pool.enqueue_job(RUN_JOB, {"n": 1}, _job_id="again", _queue_name=QUEUE)
    await pool.incr(retry_key_prefix + "again")  # what a worker that died mid-run leaves behind
    recorder = Recorder()
    await run_until_empty(redis_url, recorder)
    assert [call["job_try"] for call in recorder.calls] == [2]  # engine.worker.MAX_TRIES counts these


async def test_a_payload_arq_cannot_read_reaches_our_function_as_a_refusal_not_a_silent_drop(pool, redis_url, tmp_path):
    trap = tmp_path / "unpickled"
    envelope = {"t": 1, "f": RUN_JOB, "a": [Booby(trap)], "k": {}, "et": 0}
    await pool.set(arq_job_key("planted"), pickle.dumps(envelope), ex=60)
    await pool.zadd(QUEUE, {"planted": 1})
    recorder = Recorder()
    await run_until_empty(redis_url, recorder)
    assert [(call["job_id"], call["data"]) for call in recorder.calls] == [("planted", None)]
    assert "not msgpack" in recorder.calls[0]["unreadable"]
    assert not trap.exists()


async def test_our_workers_and_pools_use_our_codecs_and_keep_no_results(redis_url, tmp_path):
    models = load_models(Path(__file__).resolve().parents[2] / "config" / "models.toml")
    engine = Engine(models, "cpu")
    try:
        workers = build_workers(engine, redis_url, ["classic"], job_timeout=60, result_ttl=60, lease=LEASE)
        for worker in workers:
            assert worker.job_serializer is pack_arq and worker.job_deserializer is unpack_arq
            assert worker.keep_result_s == 0 and worker.in_progress_timeout_s == LEASE
            assert worker.functions[RUN_JOB].max_tries is not None
    finally:
        engine.close()
