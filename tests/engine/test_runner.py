"""The engine's resident models: a memory budget, least-recently-used eviction, no reloads, prefetch."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from bot.jobs import Status  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from engine.kinds import img2img  # noqa: E402
from engine.residency import size_of  # noqa: E402
from engine.runner import Engine  # noqa: E402
from tests.engine.tiny_jobs import Run, make_job, tiny_models, until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tiny_sd):
    return tiny_models(tiny_sd)


@pytest.fixture(scope="module")
def tiny_size(models) -> int:
    """What one tiny pipeline holds, in bytes."""
    return size_of(img2img.load(models["tiny-a"], "cpu"))


@pytest.fixture
def engines():
    made: list[Engine] = []

    def make(models, **options) -> Engine:
        engine = Engine(models, "cpu", **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


async def run(engine: Engine, models, name: str, **request):
    result = await Run(engine, make_job(models[name], **request)).result()
    assert result.status is Status.done, result.error
    return result


async def test_switching_between_resident_models_loads_nothing(engines, models):
    engine = engines(models)
    for name in ("tiny-a", "tiny-b", "classic", "tiny-a", "tiny-b", "classic", "tiny-a"):
        await run(engine, models, name)
    assert engine.residency.loads == {"tiny-a": 1, "tiny-b": 1, "classic": 1}
    assert not engine.residency.evictions
    assert engine.resident() == ["tiny-b", "classic", "tiny-a"]  # least recently used first


async def test_a_small_budget_evicts_the_least_recently_used_model(engines, models, tiny_size):
    engine = engines(models, memory_budget=tiny_size + tiny_size // 2)  # room for one tiny model
    for name in ("classic", "tiny-a", "tiny-b", "tiny-a"):
        await run(engine, models, name)
    assert engine.residency.loads == {"classic": 1, "tiny-a": 2, "tiny-b": 1}
    assert engine.residency.evictions == {"tiny-a": 1, "tiny-b": 1}
    assert engine.resident() == ["classic", "tiny-a"]  # classic holds no memory: it is never in the way
    assert engine.residency.used() == tiny_size <= engine.residency.budget


def test_a_models_size_is_its_parameters_and_buffers(models, tiny_size):
    model = img2img.load(models["tiny-a"], "cpu")
    modules = [c for c in model.pipe.components.values() if hasattr(c, "parameters")]
    expected = sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))
    assert tiny_size == expected > 100_000
    assert size_of(Engine(models).load(models["classic"])) == 0
    # Read from the safetensors headers before loading: every saved weight (not the unsaved buffers).
    estimate = img2img.expected_nbytes(models["tiny-a"], "cpu")
    assert 0.95 * tiny_size <= estimate <= tiny_size


async def test_prefetch_loads_on_the_loader_thread_when_there_is_room(engines, models, caplog):
    caplog.set_level(logging.INFO, logger="engine.residency")
    engine = engines(models)
    assert engine.prefetch("tiny-b").result(timeout=60) is True
    assert engine.resident() == ["tiny-b"]
    [record] = [r for r in caplog.records if r.getMessage().startswith("tiny-b is resident")]
    assert record.threadName.startswith("engine-loader")
    await run(engine, models, "tiny-b")
    assert engine.residency.loads == {"tiny-b": 1}
    assert engine.prefetch("nothing-by-that-name") is None


async def test_prefetch_never_evicts(engines, models, tiny_size):
    engine = engines(models, memory_budget=tiny_size + tiny_size // 2)
    await run(engine, models, "tiny-a")
    assert engine.prefetch("tiny-b").result(timeout=60) is False
    assert engine.resident() == ["tiny-a"] and "tiny-b" not in engine.residency.loads


async def test_a_waiting_jobs_model_loads_while_the_current_job_runs(engines, models):
    engine = engines(models, batch_window=0)
    await run(engine, models, "tiny-a")
    long = Run(engine, make_job(models["tiny-a"], num_inference_steps=10_000, strength=1.0))
    await asyncio.wait_for(long.stepped.wait(), 60)
    waiting = Run(engine, make_job(models["tiny-b"]))
    await until(lambda: "tiny-b" in engine.resident())
    assert not long.task.done() and not waiting.task.done()  # loaded while tiny-a was running
    long.cancel.set()
    assert (await long.result()).status is Status.cancelled
    assert (await waiting.result()).status is Status.done
    assert engine.residency.loads == {"tiny-a": 1, "tiny-b": 1}


async def test_a_model_that_cannot_load_fails_its_job_and_is_not_kept(engines, tiny_sd, tmp_path):
    models = tiny_models(tmp_path / "nowhere", names=("gone",))
    engine = engines(models)
    for _ in range(2):
        result = await Run(engine, make_job(models["gone"])).result()
        assert result.status is Status.failed and result.error.startswith("needs weights")
    assert engine.resident() == [] and not engine.residency.loads


def test_settings_reach_the_engine(models):
    settings = load_settings(
        {"REMIXBOT_MEMORY_BUDGET": "12GiB", "REMIXBOT_BATCH_SIZE": "8", "REMIXBOT_BATCH_WINDOW": "0.05"}
    )
    engine = Engine.from_settings(models, settings)
    assert engine.residency.budget == 12 * 1024**3
    assert (engine.batch_size(models["tiny-a"]), engine.batch_window) == (8, 0.05)
    assert engine.concurrency("gpu") == 8 and engine.concurrency("classic") == 1  # arq's max_jobs per group
    assert Engine(models, batch_window=0).concurrency("gpu") == 1
    # Unset: batches on a GPU, none on a CPU (where they only make every job wait for the whole batch).
    assert Engine(models, "cpu").concurrency("gpu") == 1
    assert Engine(models, "cuda").concurrency("gpu") == 8
    assert load_settings({"REMIXBOT_MEMORY_BUDGET": "512MB"}).memory_budget == 512_000_000
    with pytest.raises(ValueError, match="REMIXBOT_MEMORY_BUDGET"):
        load_settings({"REMIXBOT_MEMORY_BUDGET": "lots"})


def test_the_default_budget_is_most_of_the_device(models):
    engine = Engine(models, "cpu")
    assert engine.residency.budget is None  # not known before the device is
    engine.load(models["tiny-a"])
    ram = Path("/proc/meminfo").read_text().split()[1]  # MemTotal in kB
    assert engine.residency.budget == pytest.approx(0.8 * int(ram) * 1024, rel=0.01)
    engine.close()


def test_classic_work_never_imports_torch():
    code = textwrap.dedent("""
        import asyncio, io, sys, threading
        from PIL import Image
        from bot.jobs import Action, Job, Origin, Request
        from bot.models import parse_models
        from engine.runner import Engine

        async def main():
            engine = Engine(parse_models(""), batch_size=4, batch_window=0.05)
            buffer = io.BytesIO()
            Image.new("RGB", (96, 64), (200, 120, 40)).save(buffer, "PNG")
            jobs = [Job(id=f"job{i}", action=Action.remix, origin=Origin("console", "alice"),
                        image=buffer.getvalue(),
                        request=Request(prompt="warm watercolor", model="classic", strength=0.6, seed=i))
                    for i in range(3)]
            runs = [engine.run(job, lambda s, t, preview=b"": None, threading.Event()) for job in jobs]
            results = await asyncio.gather(*runs)
            print(",".join(r.status.value for r in results), engine.stats()["batches"],
                  engine.prefetch("classic").result())
            engine.close()

        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers")))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, modules = out.stdout.strip().splitlines()
    assert first == "done,done,done {1: 3} True"  # classic jobs run one by one, never batched
    assert modules == "[]"
