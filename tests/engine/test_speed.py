"""The diffusers-img2img speed options on the tiny pipeline (torch.compile is exercised by
``benchmarks/gpu.py --dry-run``: compiling takes minutes on a CPU)."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0  # noqa: E402
from PIL import Image  # noqa: E402

from bot.jobs import Action, Request  # noqa: E402
from engine.kinds import img2img  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_jobs import tiny_models  # noqa: E402
from tests.engine.tiny_models import build_tiny_sd  # noqa: E402


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    folder: Path = build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")
    return tiny_models(folder, names=("tiny",))["tiny"]


def work(entry, side: int = 64) -> Work:
    request = Request(prompt="a cup", model=entry.name, strength=0.6, seed=1)
    image = Image.new("RGB", (side, side), (180, 90, 40))
    return Work(action=Action.remix, request=request, entry=entry, image=image, references=(), seeds=(1,), device="cpu")


def processors(module) -> set[type]:
    return {type(p) for p in module.attn_processors.values()}


def test_the_cpu_defaults(entry):
    model = img2img.load(entry, "cpu")
    assert model.speed == {
        "dtype": "float32",
        "sdpa": True,
        "vae_slicing": True,
        "host_sigmas": True,
        "vae_tiling": img2img.VAE_TILING,
    }
    assert processors(model.pipe.unet) == processors(model.pipe.vae) == {AttnProcessor2_0}
    weight = model.pipe.unet.conv_in.weight
    assert not weight.is_contiguous(memory_format=torch.channels_last) and model.pipe.vae.use_slicing


def test_plain_attention_is_put_back_on_sdpa(entry):
    model = img2img.load(entry, "cpu")
    model.pipe.unet.set_attn_processor(AttnProcessor())
    assert processors(model.pipe.unet) == {AttnProcessor}
    assert img2img._use_sdpa(model.pipe) is True
    assert processors(model.pipe.unet) == {AttnProcessor2_0}


def test_channels_last_gives_the_same_pixels(entry):
    plain = img2img.load(entry, "cpu")
    fast = img2img.load(replace(entry, options={"channels_last": True}), "cpu")
    assert fast.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = (np.asarray(m.run(work(entry), lambda s, t: None)[0]).astype(int) for m in (plain, fast))
    assert np.abs(a - b).max() <= 1


def test_vae_tiling_only_above_its_threshold(entry):
    model = img2img.load(replace(entry, options={"vae_tiling": 48}), "cpu")
    model.run(work(entry, 64), lambda s, t: None)
    assert model.pipe.vae.use_tiling is True
    model.run(work(entry, 48), lambda s, t: None)
    assert model.pipe.vae.use_tiling is False
    never = img2img.load(replace(entry, options={"vae_tiling": 0}), "cpu")
    never.run(work(entry, 64), lambda s, t: None)
    assert never.pipe.vae.use_tiling is False


def test_sigmas_stay_on_the_host_and_the_signature_diffusers_reads_is_kept(entry):
    model = img2img.load(entry, "cpu")
    scheduler = model.pipe.scheduler
    wanted = inspect.signature(type(scheduler).set_timesteps).parameters
    assert set(inspect.signature(scheduler.set_timesteps).parameters) == set(wanted) - {"self"}
    scheduler.set_timesteps(10)
    assert scheduler.sigmas.device.type == "cpu"
    img2img._keep_sigmas_on_host(scheduler)  # applied twice: wrapped once
    assert scheduler.set_timesteps.__wrapped__ is not None
    assert not hasattr(scheduler.set_timesteps.__wrapped__, "keeps_sigmas_on_host")


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"compile": "fast"}, "compile = 'fast'"),
        ({"vae_tiling": -1}, "vae_tiling = -1"),
        ({"vae_tiling": "big"}, "vae_tiling = 'big'"),
        ({"cpu_dtype": "int8"}, "unknown cpu_dtype 'int8'"),
    ],
)
def test_check_names_a_bad_speed_option(entry, options, reason):
    assert reason in img2img.check(replace(entry, options=options))
    assert img2img.check(replace(entry, options={"compile": "regional", "vae_tiling": 1024})) is None
