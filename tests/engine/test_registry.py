"""A user's model goes through models.toml → registry → engine, here with a tiny pipeline built offline."""

from dataclasses import replace

import pytest

pytest.importorskip("diffusers")

from adapters.cli import build_service, close_service  # noqa: E402
from bot.jobs import Origin, Status  # noqa: E402
from bot.models import load_models  # noqa: E402
from bot.service import Refusal  # noqa: E402
from engine import registry  # noqa: E402
from tests.engine.tiny_models import build_tiny_sd  # noqa: E402
from tests.integration.harness import Events  # noqa: E402

ALICE = Origin(platform="console", user_id="alice")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "tiny-sd")


@pytest.fixture
def models_toml(tmp_path, tiny_sd):
    path = tmp_path / "models.toml"
    path.write_text(f"""
[models.tiny]
kind = "diffusers-img2img"
source = "{tiny_sd}"
description = "a tiny random-weight SD for tests"
strength = 0.6
num_inference_steps = 10
guidance_scale = 5.0
size = 64

[models.missing]
kind = "diffusers-img2img"
source = "{tmp_path / "nowhere"}"

[models.weird]
kind = "no-such-kind"
""")
    return path


@pytest.fixture
async def service(settings, models_toml):
    service = await build_service(replace(settings, models_path=models_toml))
    yield service
    await close_service(service)


def test_registry_reports_what_can_run_and_why_not(models_toml):
    availability = registry.availability(load_models(models_toml))
    assert availability["tiny"] is None and availability["classic"] is None
    assert availability["missing"].startswith("needs weights")
    assert "unknown model kind" in availability["weird"]


async def test_the_tiny_pipeline_remixes_through_the_registry_and_a_seed_reproduces(service, images_dir):
    events = Events()
    service.listen("console", events)
    photo = (images_dir / "coffee.png").read_bytes()
    first = await service.submit(ALICE, "a coffee cup --model tiny --seed 7 --n 2", photo)
    second = await service.submit(ALICE, "a coffee cup --model tiny --seed 7 --n 2", photo)
    a, b = await events.done(first.job.id), await events.done(second.job.id)
    assert a.status is Status.done, a.error
    assert a.engine == "diffusers StableDiffusionImg2ImgPipeline"
    assert [o.width for o in a.outputs] == [64, 64]  # the entry's working size, aspect kept
    assert [o.path.read_bytes() for o in a.outputs] == [o.path.read_bytes() for o in b.outputs]
    assert a.outputs[0].path.read_bytes() != a.outputs[1].path.read_bytes()  # seeds 7 and 8
    steps = [e.step for e in events.of(a.id) if e.total]
    assert steps[-1] == [e.total for e in events.of(a.id) if e.total][-1]


async def test_a_running_diffusion_job_stops_at_the_next_step_when_cancelled(service, images_dir):
    events = Events()
    service.listen("console", events)
    photo = (images_dir / "coffee.png").read_bytes()
    ticket = await service.submit(ALICE, "slow --model tiny --steps 100 --strength 1 --size 128 --n 2", photo)
    await events.until(lambda: any(e.step >= 2 for e in events.of(ticket.job.id)))
    assert await service.cancel(ALICE, ticket.job.id) == [ticket.job.id]
    record = await events.done(ticket.job.id)
    assert record.status is Status.cancelled and record.outputs == ()
    assert max(e.step for e in events.of(ticket.job.id)) < 100


async def test_a_model_without_weights_is_refused_with_the_reason(service, images_dir, tmp_path):
    events = Events()
    service.listen("console", events)
    with pytest.raises(Refusal, match="isn't available on this server right now: needs weights") as refused:
        await service.submit(ALICE, "x --model missing", (images_dir / "coffee.png").read_bytes())
    assert str(tmp_path) not in str(refused.value), "no operator path in chat"
    assert await service.jobs(ALICE) == [], "refused before it was queued"
