"""The source check in Redis mode: the bot on ArqQueue, real Redis, a real `remixbot worker` process.

- A classifier that needs no torch (nudenet, on onnxruntime) runs in the bot process itself, so a
  flagged source is refused before anything is queued, and the bot process still never loads torch.
- A classifier that needs torch (diffusers' safety checker) can't: the jobs go marked, the worker
  checks the source first and refuses a flagged one with a user-safe line, and the bot logs it.

Set REMIXBOT_TEST_REDIS_URL to a database of your own (these tests flush it).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import redis

from bot.jobs import Origin, Status
from bot.moderation import SOURCE_FLAGGED
from tests.adapters.discord.fake_server import GUILD_ID
from tests.adapters.discord.steps import remix, result
from tests.adapters.verdicts import LABEL, Scripted, inject
from tests.conftest import ROOT
from tests.integration.harness import start_worker, stop, wait_for_worker


@pytest.fixture
def scorer(monkeypatch) -> Scripted:
    scripted = Scripted()
    inject(monkeypatch, scripted)  # the bot process's classifier (the worker has its own, real one)
    return scripted


@pytest.fixture
def worker(redis_url, env):
    """A classic worker with the shipped registry: its own classifier is the real nudenet."""
    process = start_worker(redis_url, env, "classic")
    wait_for_worker(redis_url, process)
    yield process
    print("worker output:", stop(process)[-3000:])


def test_nudenet_runs_in_the_bot_process_in_redis_mode_without_torch(redis_url, tmp_path, images_dir):
    pytest.importorskip("nudenet")
    pytest.importorskip("onnxruntime")
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from dataclasses import replace
        from pathlib import Path
        from adapters.cli import build_service, close_service
        from bot.settings import load_settings

        async def main():
            settings = replace(load_settings({{}}), redis_url={redis_url!r}, data_dir=Path({str(tmp_path)!r}))
            service = await build_service(settings)
            try:
                photos = [Path({str(images_dir)!r}, name).read_bytes() for name in ("coffee.png", "chelsea.png")]
                verdicts = await service.classifier.classify(photos)
                print(type(service.queue).__name__, service.classifier.entry.kind, [v.flagged for v in verdicts])
                heavy = ("torch", "torchvision", "diffusers", "transformers", "accelerate")
                print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in heavy))
            finally:
                await close_service(service)

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["ArqQueue nudenet [False, False]", "loaded: []"], out.stdout


async def test_a_flagged_source_is_refused_in_the_bot_before_it_is_queued(
    scorer, deploy, discord_settings, redis_url, worker, images_dir
):
    deployment = await deploy(replace(discord_settings, redis_url=redis_url))
    server, service = deployment.server, deployment.service
    assert service.classifier is not None, "Redis mode: nudenet runs in the bot process"
    alice = server.user("alice")
    scorer.flagging = True
    interaction = await server.slash("remix", alice, image=server.upload(images_dir / "coffee.png"), prompt="x")
    assert await interaction.text() == SOURCE_FLAGGED
    (entry,) = await service.moderation_log(_origin_of(alice, server))
    assert (entry.reason, entry.detail, entry.score) == ("classifier", LABEL, 0.93)
    client = redis.Redis.from_url(redis_url)
    try:
        assert not client.keys("arq:job:*") and not client.keys("remixbot:result:*"), "nothing was queued"
    finally:
        client.close()
    scorer.flagging = False
    _, job_id = await remix(server, alice, images_dir / "coffee.png")
    message = await result(server, service, job_id, timeout=60)
    record = await service.history.job(job_id)
    assert record.status is Status.done and len(message["attachments"]) == 1
    assert not record.outputs[0].flagged, "the worker's real nudenet passed the fixture photo's remix"


@pytest.fixture
def checker_models(tmp_path):
    """A registry whose classifier is diffusers' safety checker (tiny weights that flag everything)."""
    pytest.importorskip("diffusers")
    from tests.engine.tiny_safety import build_tiny_safety_checker

    folder = build_tiny_safety_checker(tmp_path / "checker", flag_everything=True)
    path = tmp_path / "models.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [defaults]
            model = "classic"
            safety = "checker"

            [models.classic]
            kind = "classic"
            size = 512

            [safety.checker]
            kind = "safety-checker"
            source = "{folder}"
            """
        )
    )
    return path


@pytest.fixture
def checker_worker(redis_url, env, checker_models):
    process = start_worker(redis_url, dict(env, REMIXBOT_MODELS=str(checker_models)), "classic")
    wait_for_worker(redis_url, process, timeout=120)
    yield process
    print("worker output:", stop(process)[-3000:])


async def test_a_classifier_that_needs_torch_checks_the_source_on_the_worker(
    deploy, discord_settings, redis_url, checker_models, checker_worker, images_dir
):
    settings = replace(discord_settings, redis_url=redis_url, models_path=checker_models)
    deployment = await deploy(settings)
    server, service = deployment.server, deployment.service
    assert service.classifier is None, "the safety checker needs torch: not in the bot process"
    alice = server.user("alice")
    _, job_id = await remix(server, alice, images_dir / "coffee.png")
    message = await result(server, service, job_id, timeout=90)
    assert SOURCE_FLAGGED in message["content"] and message["attachments"] == []
    record = await service.history.job(job_id)
    assert record.status is Status.failed and record.error == SOURCE_FLAGGED and record.outputs == ()
    (entry,) = await service.moderation_log(_origin_of(alice, server))
    assert (entry.reason, entry.detail, entry.score) == ("classifier", "nsfw concept", 1.0)


def _origin_of(user, server) -> Origin:
    return Origin(platform="discord", user_id=str(user.id), chat_id=str(server.general.id), guild_id=str(GUILD_ID))


async def test_an_admin_cancels_anyones_waiting_job_here(deploy, discord_settings, redis_url, images_dir):
    """No worker serves the queue: the job waits in Redis until someone cancels it."""
    deployment = await deploy(replace(discord_settings, redis_url=redis_url))
    server, service = deployment.server, deployment.service
    alice, bob, mod = server.user("alice"), server.user("bob"), server.user("mod", manager=True)
    _, job_id = await remix(server, alice, images_dir / "coffee.png")
    refused = await (await server.slash("cancel", bob, job=job_id)).text()
    assert refused == "Only the person who asked for that job can cancel it (or an admin here)."
    elsewhere = server.channel("elsewhere")
    assert "isn't available here" in await (await server.slash("cancel", mod, elsewhere, job=job_id)).text()
    assert (await service.history.job(job_id)).status is Status.queued
    assert await (await server.slash("cancel", mod, job=job_id)).text() == f"Cancelled 1 job: `{job_id}`"
    message = await result(server, service, job_id)
    assert "Cancelled" in message["content"]
    assert (await service.history.job(job_id)).status is Status.cancelled
