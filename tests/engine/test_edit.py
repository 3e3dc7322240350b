"""Instruction edits: instruct-pix2pix on a tiny random-weight pipeline built offline, through the registry;
FLUX Kontext up to its weights boundary."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, JobCancelled, Request
from bot.models import ModelEntry
from engine import registry
from engine.work import Work

pytest.importorskip("diffusers")

from tests.fixtures import IMAGES  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    from tests.engine.tiny_pipelines import single_torch_thread

    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> ModelEntry:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.engine.tiny_pipelines import build_tiny_pix2pix

    folder = build_tiny_pix2pix(tmp_path_factory.mktemp("tiny") / "pix2pix")
    return ModelEntry(
        name="edit",
        kind="instruct-pix2pix",
        source=str(folder),
        num_inference_steps=4,
        guidance_scale=6.0,
        size=64,
        options={"image_guidance_scale": 1.5},
    )


@pytest.fixture(scope="module")
def model(entry):
    return registry.kind_of(entry).load(entry, "cpu")


@pytest.fixture(scope="module")
def source() -> Image.Image:
    with Image.open(IMAGES / "astronaut.png") as image:
        return image.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)


def edit(model, entry, image, seeds=(5,), progress=None, **request) -> list[np.ndarray]:
    fields = dict(
        prompt="make the jacket red",
        model=entry.name,
        strength=1.0,
        seed=seeds[0],
        num_inference_steps=entry.num_inference_steps,
        guidance_scale=entry.guidance_scale,
        num_images_per_prompt=len(seeds),
    )
    fields.update(request)
    work = Work(
        action=Action.remix,
        request=Request(**fields),
        entry=entry,
        image=image,
        references=(),
        seeds=tuple(seeds),
        device="cpu",
    )
    return [np.asarray(out).astype(int) for out in model.run(work, progress or (lambda step, total: None))]


def test_the_edit_model_loads_through_the_registry_and_a_seed_repeats(model, entry, source):
    assert registry.check(entry) is None
    assert model.label == "diffusers StableDiffusionInstructPix2PixPipeline"
    steps = []
    first, second = edit(model, entry, source, seeds=(5, 6), progress=lambda s, t: steps.append((s, t)))
    assert first.shape == (64, 64, 3)
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # no strength: the whole schedule runs
    (again,) = edit(model, entry, source, seeds=(5,))
    assert np.array_equal(again, first)  # batched or alone, the same seed gives the same image
    assert np.abs(first - second).mean() > 1


def test_image_cfg_and_the_instruction_change_the_edit(model, entry, source):
    (default,) = edit(model, entry, source)
    (explicit,) = edit(model, entry, source, image_guidance_scale=1.5)
    (looser,) = edit(model, entry, source, image_guidance_scale=1.0)
    (other,) = edit(model, entry, source, prompt="turn it into winter")
    assert np.array_equal(default, explicit)  # the entry's image_guidance_scale is the default
    assert np.abs(looser - default).mean() > 0.5
    assert np.abs(other - default).mean() > 0.5


def test_an_edit_cancels_at_the_next_step(model, entry, source):
    def cancel(step, total):
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        edit(model, entry, source, progress=cancel)


def test_kontext_and_a_missing_edit_model_say_what_they_need(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    kontext = ModelEntry(name="kontext", kind="flux-kontext", source="black-forest-labs/FLUX.1-Kontext-dev")
    reason = registry.check(kontext)
    assert reason.startswith("needs weights: download black-forest-labs/FLUX.1-Kontext-dev first")
    assert "gated" in reason and "24 GB" in reason
    pix2pix = ModelEntry(name="edit", kind="instruct-pix2pix", source="timbrooks/instruct-pix2pix")
    assert registry.check(pix2pix) == (
        "needs weights: download timbrooks/instruct-pix2pix first (hf download timbrooks/instruct-pix2pix)"
    )
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    single = ModelEntry(name="single", kind="instruct-pix2pix", source=str(file))
    assert registry.check(single).startswith("misconfigured: single needs a diffusers folder or hub id")
