"""The diffusers-img2img kind on a tiny random-weight SD pipeline, built offline by tiny_models.py."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

# Before anything from Hugging Face is imported: a test never reaches the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from bot.jobs import Action, JobCancelled, Request  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import img2img, outputs, sources  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_models import build_tiny_sd, build_tiny_sd_single_file  # noqa: E402
from tests.fixtures import IMAGES  # noqa: E402

SIDE = 64
STEPS, STRENGTH = 5, 0.6  # 3 denoising steps
PIPELINE = "diffusers StableDiffusionImg2ImgPipeline"


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="session")
def tiny_single_file(tiny_sd, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_single")
    return build_tiny_sd_single_file(folder / "tiny-sd15.safetensors", tiny_sd)


@pytest.fixture(scope="module")
def entry(tiny_sd) -> ModelEntry:
    return ModelEntry(
        name="tiny",
        kind="diffusers-img2img",
        source=str(tiny_sd),
        strength=STRENGTH,
        num_inference_steps=STEPS,
        guidance_scale=7.0,
        size=SIDE,
        multiple=8,
    )


@pytest.fixture(scope="module")
def model(entry):
    return img2img.load(entry, "cpu")


@pytest.fixture(scope="module")
def source() -> Image.Image:
    with Image.open(IMAGES / "coffee.png") as image:
        return ImageOps.fit(image.convert("RGB"), (SIDE, SIDE), Image.Resampling.LANCZOS)


@pytest.fixture
def empty_hub(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache, offline: nothing can be found or fetched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


def work_for(entry: ModelEntry, image: Image.Image, seeds=(1, 2), **request) -> Work:
    fields = dict(
        prompt="a watercolor cup of coffee",
        model=entry.name,
        strength=entry.strength,
        num_inference_steps=entry.num_inference_steps,
        guidance_scale=entry.guidance_scale,
        seed=seeds[0],
    )
    fields.update(request)
    return Work(
        action=Action.remix,
        request=Request(**fields),
        entry=entry,
        image=image,
        references=(),
        seeds=tuple(seeds),
        device="cpu",
    )


def pixels(images) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


def no_progress(step: int, total: int) -> None:
    pass


# --- check -------------------------------------------------------------------------------------------


def test_check_accepts_the_tiny_folder(entry):
    assert img2img.check(entry) is None


def test_check_names_a_missing_folder_or_file(entry, tmp_path):
    for missing in (tmp_path / "nowhere", tmp_path / "model.safetensors"):
        reason = img2img.check(replace(entry, source=str(missing)))
        assert reason == f"needs weights: {missing} not found"


def test_check_rejects_a_folder_that_is_not_a_pipeline(entry, tmp_path):
    reason = img2img.check(replace(entry, source=str(tmp_path)))
    assert reason.startswith("needs weights:") and "model_index.json" in reason


def test_check_an_uncached_hub_id_asks_for_a_download(entry, empty_hub):
    reason = img2img.check(replace(entry, source="stabilityai/sd-turbo"))
    assert reason == "needs weights: download stabilityai/sd-turbo first (hf download stabilityai/sd-turbo)"
    assert not empty_hub.exists() or not any(empty_hub.iterdir())  # looked, wrote nothing


def test_check_without_the_engine_extra(entry, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    assert img2img.check(entry) == "needs the engine extra: pip install 'remixbot[engine]'"


def test_check_an_unknown_scheduler(entry):
    reason = img2img.check(replace(entry, options={"scheduler": "NoSuchScheduler"}))
    assert "unknown scheduler 'NoSuchScheduler'" in reason
    assert img2img.check(replace(entry, options={"scheduler": "EulerAncestralDiscreteScheduler"})) is None
    assert "unknown dtype 'float8'" in img2img.check(replace(entry, options={"dtype": "float8"}))


def test_check_a_single_file_needs_its_configs(entry, tiny_single_file, tiny_sd, empty_hub):
    single = replace(entry, source=str(tiny_single_file))
    # Read from the header: an SD 1.x checkpoint, so diffusers would want SD 1.5's configs from the hub.
    reason = img2img.check(single)
    assert reason.startswith(
        "needs weights: tiny-sd15.safetensors needs the configs of stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    assert img2img.check(replace(single, options={"config": str(tiny_sd)})) is None
    assert "unknown architecture" in img2img.check(replace(single, options={"architecture": "sd9"}))


# --- load and run ------------------------------------------------------------------------------------


def test_run_gives_one_image_per_seed(model, entry, source):
    images = model.run(work_for(entry, source, seeds=(1, 2, 3)), no_progress)
    assert model.label == PIPELINE
    assert len(images) == 3
    for image in images:
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB" and image.size == (SIDE, SIDE)
        assert np.asarray(image).std() > 1  # not blank


def test_same_seed_same_pixels_other_seed_other_pixels(model, entry, source):
    first = pixels(model.run(work_for(entry, source, seeds=(7, 8)), no_progress))
    again = pixels(model.run(work_for(entry, source, seeds=(7, 8)), no_progress))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])
    # Each output depends on its own seed only (a reroll of one output reproduces it), up to batching noise.
    alone = pixels(model.run(work_for(entry, source, seeds=(8,)), no_progress))[0]
    assert np.abs(alone.astype(int) - first[1].astype(int)).max() <= 2


def test_progress_counts_the_denoising_steps(model, entry, source):
    calls = []
    model.run(work_for(entry, source, seeds=(1,)), lambda step, total: calls.append((step, total)))
    total = int(STEPS * STRENGTH)
    assert calls == [(step, total) for step in range(1, total + 1)]


def test_cancelling_in_progress_stops_the_run(model, entry, source):
    calls = []

    def progress(step: int, total: int) -> None:
        calls.append(step)
        if step == 2:
            raise JobCancelled("cancelled by the user")

    work = work_for(entry, source, seeds=(3,), num_inference_steps=20)
    with pytest.raises(JobCancelled):
        model.run(work, progress)
    assert calls == [1, 2]
    # The pipeline is left usable and still deterministic.
    after_cancel = pixels(model.run(work_for(entry, source, seeds=(3,)), no_progress))
    fresh = pixels(model.run(work_for(entry, source, seeds=(3,)), no_progress))
    assert np.array_equal(after_cancel[0], fresh[0])


def test_negative_prompt_is_used(model, entry, source):
    plain = pixels(model.run(work_for(entry, source, seeds=(5,)), no_progress))[0]
    work = work_for(entry, source, seeds=(5,), negative_prompt="blurry, text")
    negative = pixels(model.run(work, no_progress))[0]
    assert negative.shape == plain.shape
    assert not np.array_equal(negative, plain)


def test_turbo_settings_still_run_one_step(model, entry, source):
    # sd-turbo style: 2 steps, low strength, no guidance; int(2 * 0.3) == 0 would run no step at all.
    calls = []
    work = work_for(entry, source, seeds=(1,), num_inference_steps=2, strength=0.3, guidance_scale=0.0)
    images = model.run(work, lambda step, total: calls.append((step, total)))
    assert len(images) == 1 and calls == [(1, 1)]


def test_denoising_schedule():
    assert img2img.denoising_schedule(30, 0.6) == (30, 0.6)
    steps, strength = img2img.denoising_schedule(2, 0.3)
    assert int(steps * strength) == 1
    steps, strength = img2img.denoising_schedule(4, 0.0)
    assert int(steps * strength) >= 1 and strength > 0
    assert img2img.denoising_schedule(0, 2.0) == (1, 1.0)


def test_nan_output_raises_blank_output(model, entry, source, monkeypatch):
    vae = model.pipe.vae
    decode = vae.decode

    def nan_decode(latents, *args, **kwargs):
        sample = decode(latents, *args, **kwargs)[0]
        return (torch.full_like(sample, float("nan")),)

    monkeypatch.setattr(vae, "decode", nan_decode)
    with pytest.raises(outputs.BlankOutput, match="blank image"):
        model.run(work_for(entry, source, seeds=(1,)), no_progress)


def test_safety_checker_blackout_raises_blank_output(model, entry, source, monkeypatch):
    def flag_second(image, device, dtype):
        return image, [False, True]

    monkeypatch.setattr(model.pipe, "run_safety_checker", flag_second)
    with pytest.raises(outputs.BlankOutput, match="safety checker"):
        model.run(work_for(entry, source, seeds=(1, 2)), no_progress)


@pytest.mark.parametrize("scheduler", ["PNDMScheduler", "EulerAncestralDiscreteScheduler"])
def test_scheduler_option(entry, source, scheduler):
    model = img2img.load(replace(entry, options={"scheduler": scheduler, "safety_checker": False}), "cpu")
    assert type(model.pipe.scheduler).__name__ == scheduler
    calls = []
    first = pixels(model.run(work_for(entry, source, seeds=(4,)), lambda s, t: calls.append((s, t))))
    again = pixels(model.run(work_for(entry, source, seeds=(4,)), no_progress))
    assert np.array_equal(first[0], again[0])  # ancestral sampling draws from the seeded generator too
    # The total is the loop's real length: PNDM runs one more step than int(steps * strength).
    total = calls[-1][1]
    assert total == model.pipe.num_timesteps >= int(STEPS * STRENGTH)
    assert calls == [(step, total) for step in range(1, total + 1)]


def test_dtype_is_explicit(entry):
    assert sources.torch_dtype(entry, "cpu") == torch.float32
    assert sources.torch_dtype(replace(entry, options={"dtype": "bfloat16"}), "cpu") == torch.float32
    assert sources.torch_dtype(replace(entry, options={"cpu_dtype": "bf16"}), "cpu") == torch.bfloat16
    assert sources.torch_dtype(entry, "cuda") == torch.float16
    assert sources.torch_dtype(replace(entry, options={"dtype": "bfloat16"}), "cuda:1") == torch.bfloat16


def test_a_cached_hub_id_loads_offline(entry, tiny_sd, empty_hub, source, model):
    # The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}.
    repo = empty_hub / "models--remixbot-tests--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_sd, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    hub_entry = replace(entry, source="remixbot-tests/tiny-sd")
    assert img2img.check(hub_entry) is None
    loaded = img2img.load(hub_entry, "cpu")
    assert loaded.label == PIPELINE
    work = work_for(entry, source, seeds=(9,))
    assert np.array_equal(pixels(loaded.run(work, no_progress))[0], pixels(model.run(work, no_progress))[0])


def test_a_single_file_loads_offline_with_a_local_config(entry, tiny_single_file, tiny_sd, source, model):
    single = replace(entry, source=str(tiny_single_file), options={"config": str(tiny_sd)})
    assert img2img.check(single) is None
    loaded = img2img.load(single, "cpu")
    assert loaded.label == PIPELINE
    work = work_for(entry, source, seeds=(9,))
    # The same weights through the LDM layout and diffusers' conversion: the same pixels.
    assert np.array_equal(pixels(loaded.run(work, no_progress))[0], pixels(model.run(work, no_progress))[0])


def test_a_single_file_without_configs_does_not_reach_the_hub(entry, tiny_single_file, empty_hub):
    with pytest.raises(FileNotFoundError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        img2img.load(replace(entry, source=str(tiny_single_file)), "cpu")


def test_tiny_pipeline_is_what_the_tests_think(tiny_sd):
    index = json.loads((tiny_sd / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionImg2ImgPipeline"
    assert index.get("safety_checker") in (None, [None, None])


def test_a_hub_file_link_is_looked_up_in_the_cache(entry, tiny_single_file, tiny_sd, empty_hub, source, model):
    link = "https://huggingface.co/remixbot-tests/tiny-single/blob/main/tiny-sd15.safetensors"
    linked = replace(entry, source=link, options={"config": str(tiny_sd)})
    assert img2img.check(linked) == (
        "needs weights: download remixbot-tests/tiny-single tiny-sd15.safetensors first "
        "(hf download remixbot-tests/tiny-single tiny-sd15.safetensors)"
    )
    repo = empty_hub / "models--remixbot-tests--tiny-single"
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(tiny_single_file, repo / "snapshots" / commit / "tiny-sd15.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert img2img.check(linked) is None
    work = work_for(entry, source, seeds=(9,))
    loaded = img2img.load(linked, "cpu")
    assert np.array_equal(pixels(loaded.run(work, no_progress))[0], pixels(model.run(work, no_progress))[0])


def test_check_rejects_an_inpainting_single_file(entry, tmp_path):
    from safetensors.torch import save_file

    # What an SD inpainting checkpoint's header says: 9 input channels.
    path = tmp_path / "inpaint.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 9, 3, 3)}, str(path))
    reason = img2img.check(replace(entry, source=str(path)))
    assert reason == (
        "misconfigured: inpaint.safetensors is an unsupported (inpainting) checkpoint, not an SD 1.x/2.x/SDXL one"
    )
