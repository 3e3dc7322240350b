"""Batching in the engine: concurrent jobs of one model run as one batch, each as if it ran alone."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

pytest.importorskip("diffusers")

from bot.jobs import Status  # noqa: E402
from engine.runner import Engine  # noqa: E402
from tests.engine.tiny_jobs import Run, make_job, pixels, tiny_models  # noqa: E402

WINDOW = 1.0  # long enough that jobs started together always meet; a full batch does not wait for it


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tiny_sd):
    return tiny_models(tiny_sd, names=("tiny",))


@pytest.fixture
def engine(models):
    engine = Engine(models, "cpu", batch_size=3, batch_window=WINDOW)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def alone(models):
    """Runs each job by itself (batching off): the reference pixels."""
    engine = Engine(models, "cpu", batch_window=0)

    async def run(job):
        result = await Run(engine, job).result()
        assert result.status is Status.done, result.error
        return pixels(result)

    yield run
    engine.close()


def close_enough(batched: list[np.ndarray], reference: list[np.ndarray]) -> bool:
    """Equal within 1/255 per pixel and channel."""
    return len(batched) == len(reference) and all(
        a.shape == b.shape and np.abs(a - b).max() <= 1 for a, b in zip(batched, reference, strict=True)
    )


async def test_concurrent_jobs_run_as_one_batch_and_match_their_unbatched_pixels(engine, models, alone):
    tiny = models["tiny"]
    jobs = [
        make_job(tiny, "a watercolor cup", seed=1),
        make_job(tiny, "an oil painting of a rocket", seed=5, n=2, image="rocket.jpg"),
        make_job(tiny, "a cup, noir", seed=9, negative_prompt="colour, text"),
    ]
    runs = [Run(engine, job) for job in jobs]
    results = [await run.result() for run in runs]
    assert [r.status for r in results] == [Status.done] * 3, [r.error for r in results]
    assert engine.batches == {3: 1}  # one pipeline call for the three jobs (four images)
    assert [len(r.outputs) for r in results] == [1, 2, 1]
    for job, result in zip(jobs, results, strict=True):
        assert close_enough(pixels(result), await alone(job))
    assert [o.seed for o in results[1].outputs] == [5, 6]
    assert all(run.steps[-1] == (3, 3) for run in runs)  # each job saw every step of the batch


async def test_each_item_keeps_its_own_seed(engine, models):
    tiny = models["tiny"]
    runs = [Run(engine, make_job(tiny, seed=seed)) for seed in (4, 4, 5)]
    same, again, other = [pixels(await run.result())[0] for run in runs]
    assert engine.batches == {3: 1}
    assert np.array_equal(same, again)
    assert np.abs(same - other).max() > 10


async def test_only_compatible_jobs_share_a_batch(models):
    tiny = models["tiny"]
    engine = Engine(models, "cpu", batch_size=2, batch_window=0.3)
    try:
        jobs = [
            make_job(tiny, seed=1),
            make_job(tiny, seed=2, num_inference_steps=6),
            make_job(tiny, seed=3),
            make_job(tiny, seed=4, image="astronaut.png"),
        ]
        runs = [Run(engine, job) for job in jobs]
        results = [await run.result() for run in runs]
        assert all(r.status is Status.done for r in results)
        assert engine.batches == {2: 1, 1: 2}  # steps 6 and the square 64x64 source each run alone
    finally:
        engine.close()


async def test_a_cancelled_job_leaves_its_batch_and_the_others_finish(engine, models, alone):
    tiny = models["tiny"]
    slow = dict(num_inference_steps=30, strength=1.0)

    def cancel_at_two(run: Run, step: int, total: int) -> None:
        if step == 2:
            run.cancel.set()

    first = Run(engine, make_job(tiny, seed=1, **slow))
    cancelled = Run(engine, make_job(tiny, seed=2, **slow), on_step=cancel_at_two)
    last = Run(engine, make_job(tiny, seed=3, **slow))
    result = await cancelled.result()
    assert result.status is Status.cancelled and result.outputs == ()
    assert not first.task.done() and not last.task.done()  # the batch goes on without it
    assert max(step for step, _ in cancelled.steps) < 10  # it stopped a step or so after its cancel
    done = [await first.result(), await last.result()]
    assert [r.status for r in done] == [Status.done, Status.done]
    assert engine.batches == {3: 1}
    assert first.steps[-1] == last.steps[-1] == (30, 30)
    assert close_enough(pixels(done[0]), await alone(first.job))
    assert close_enough(pixels(done[1]), await alone(last.job))


async def test_a_batch_stops_when_all_its_jobs_are_cancelled(engine, models):
    tiny = models["tiny"]
    endless = dict(num_inference_steps=10_000, strength=1.0)
    runs = [Run(engine, make_job(tiny, seed=seed, **endless)) for seed in (1, 2)]
    await asyncio.wait_for(asyncio.gather(*(run.stepped.wait() for run in runs)), 60)
    for run in runs:
        run.cancel.set()
    results = [await run.result() for run in runs]
    assert [r.status for r in results] == [Status.cancelled, Status.cancelled]
    assert engine.batches == {2: 1}
    assert max(step for run in runs for step, _ in run.steps) < 100


async def test_a_waiting_job_that_is_cancelled_does_not_wait_for_the_batch(engine, models):
    tiny = models["tiny"]
    running = Run(engine, make_job(tiny, seed=1, num_inference_steps=10_000, strength=1.0))
    await asyncio.wait_for(running.stepped.wait(), 60)
    waiting = Run(engine, make_job(tiny, seed=2))
    waiting.cancel.set()
    assert (await waiting.result()).status is Status.cancelled
    assert not running.task.done()
    running.cancel.set()
    assert (await running.result()).status is Status.cancelled
    assert waiting.steps == []


async def test_images_are_decoded_and_encoded_off_the_group_thread(engine, models, caplog):
    caplog.set_level(logging.DEBUG, logger="engine.runner")
    tiny = models["tiny"]
    runs = [Run(engine, make_job(tiny, seed=seed)) for seed in (1, 2)]
    assert [(await run.result()).status for run in runs] == [Status.done, Status.done]
    threads = {}
    for record in caplog.records:
        threads.setdefault(record.getMessage().split(" ")[0], set()).add(record.threadName)
    assert all(name.startswith("engine-codec") for name in threads["decoded"] | threads["encoded"])
    assert threads["running"] == {"engine-gpu"}


async def test_classic_jobs_and_a_zero_window_do_not_batch(models):
    engine = Engine(models, "cpu", batch_size=3, batch_window=0)
    try:
        jobs = [make_job(models[name], seed=seed) for name in ("tiny", "classic") for seed in (1, 2)]
        runs = [Run(engine, job) for job in jobs]
        results = [await run.result() for run in runs]
        assert [r.status for r in results] == [Status.done] * 4, [r.error for r in results]
        assert engine.batches == {1: 4}
        assert engine.concurrency("gpu") == 1
    finally:
        engine.close()


async def test_a_batch_that_runs_out_of_memory_runs_its_jobs_one_by_one(engine, models, alone, monkeypatch):
    tiny = models["tiny"]
    unet = engine.load(tiny).pipe.unet
    forward = unet.forward

    def small_batches_only(sample, *args, **kwargs):
        if sample.shape[0] > 2:  # two rows per job with guidance: a batch of two jobs is too much
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (a test)")
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", small_batches_only)
    runs = [Run(engine, make_job(tiny, seed=seed)) for seed in (1, 2)]
    results = [await run.result() for run in runs]
    assert [r.status for r in results] == [Status.done, Status.done]
    assert engine.batches == {2: 1, 1: 2}
    monkeypatch.undo()
    for run, result in zip(runs, results, strict=True):
        assert close_enough(pixels(result), await alone(run.job))
