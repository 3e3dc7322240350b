"""Multi-reference: the classic colour/tone transfer on real photos, and IP-Adapter on the tiny SD (with a
tiny random-weight adapter built offline) up to the weights boundary of the real ones."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, Request
from bot.models import ModelEntry
from engine import registry
from engine.kinds import classic
from engine.work import Work
from tests.fixtures import IMAGES  # noqa: E402

CLASSIC = ModelEntry(name="classic", kind="classic")


def photo(name: str, side: int | None = None) -> Image.Image:
    with Image.open(IMAGES / name) as image:
        image = image.convert("RGB")
    if side:
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def remix_work(image, references=(), entry=CLASSIC, prompt="", seeds=(1,), action=Action.remix, **request):
    fields = dict(
        prompt=prompt,
        model=entry.name,
        strength=1.0,
        seed=seeds[0],
        num_inference_steps=entry.num_inference_steps,
        guidance_scale=entry.guidance_scale,
    )
    fields.update(request)
    return Work(
        action=action,
        request=Request(**fields),
        entry=entry,
        image=image,
        references=tuple(references),
        seeds=tuple(seeds),
        device="cpu",
    )


def mean_lab(image: Image.Image | np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64).mean(axis=0)


def run_classic(work: Work) -> np.ndarray:
    (out,) = classic.load(CLASSIC, "cpu").run(work, lambda step, total: None)
    return np.asarray(out)


# --- classic: colour and tone transfer --------------------------------------------------------------


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return photo("coffee.png")


@pytest.fixture(scope="module")
def references() -> tuple[Image.Image, Image.Image]:
    return photo("rocket.jpg"), photo("chelsea.png")


def test_the_references_colours_move_the_source_toward_them(coffee, references):
    target = np.mean([mean_lab(reference) for reference in references], axis=0)
    before = mean_lab(coffee)
    after = mean_lab(run_classic(remix_work(coffee, references)))
    assert np.linalg.norm(after - target) < 0.5 * np.linalg.norm(before - target)
    # the colour (a, b) follows the references' most closely; lightness half-way
    assert np.linalg.norm(after[1:] - target[1:]) < 0.25 * np.linalg.norm(before[1:] - target[1:])


def test_strength_and_ref_scale_blend_with_the_source(coffee, references):
    source = np.asarray(coffee)
    assert np.array_equal(run_classic(remix_work(coffee, references, strength=0.0)), source)
    assert np.array_equal(run_classic(remix_work(coffee, references, ip_adapter_scale=0.0)), source)
    full = mean_lab(run_classic(remix_work(coffee, references)))
    half = mean_lab(run_classic(remix_work(coffee, references, ip_adapter_scale=0.5)))
    start = mean_lab(coffee)
    assert np.linalg.norm(half - start) == pytest.approx(np.linalg.norm(full - start) / 2, rel=0.15)


def test_each_reference_counts_and_keywords_still_apply(coffee, references):
    rocket, chelsea = references
    with_rocket = run_classic(remix_work(coffee, [rocket]))
    with_cat = run_classic(remix_work(coffee, [chelsea]))
    both = run_classic(remix_work(coffee, [rocket, chelsea]))
    assert np.abs(with_rocket.astype(int) - with_cat).mean() > 5
    assert not np.array_equal(both, with_rocket) and not np.array_equal(both, with_cat)
    sketched = run_classic(remix_work(coffee, [rocket], prompt="noir"))
    assert np.abs(sketched[..., 0].astype(int) - sketched[..., 2]).max() <= 1  # noir: grey, after it


def test_vary_and_reroll_use_the_references_too(coffee, references):
    remixed = run_classic(remix_work(coffee, references))
    for action in (Action.vary, Action.reroll):
        assert np.array_equal(run_classic(remix_work(coffee, references, action=action)), remixed)


# --- IP-Adapter -------------------------------------------------------------------------------------


@pytest.fixture
def empty_hub(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_torch_thread) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.engine.tiny_models import build_tiny_sd
    from tests.engine.tiny_pipelines import build_tiny_ip_adapter

    folder = tmp_path_factory.mktemp("tiny")
    sd = build_tiny_sd(folder / "sd")
    return {"sd": sd, "ip": build_tiny_ip_adapter(folder / "ip-adapter", sd)}


@pytest.fixture(scope="module")
def one_torch_thread():
    pytest.importorskip("torch")
    from tests.engine.tiny_pipelines import single_torch_thread

    with single_torch_thread():
        yield


def sd_entry(source: Path | str, **options) -> ModelEntry:
    return ModelEntry(
        name="ref",
        kind="diffusers-img2img",
        source=str(source),
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=5.0,
        size=64,
        options=options,
    )


def test_real_ip_adapter_weights_are_asked_for_by_name(tiny, empty_hub):
    hub = sd_entry(
        tiny["sd"],
        ip_adapter="h94/IP-Adapter",
        ip_adapter_subfolder="models",
        ip_adapter_weight_name="ip-adapter_sd15.safetensors",
    )
    reason = registry.check(hub)
    assert reason == (
        "needs weights: ip-adapter h94/IP-Adapter: models/ip-adapter_sd15.safetensors, "
        "models/image_encoder/config.json missing (hf download h94/IP-Adapter "
        "models/ip-adapter_sd15.safetensors --include 'models/image_encoder/*')"
    )
    from engine.kinds import img2img, sources

    with pytest.raises(sources.MissingWeights, match="needs weights: ip-adapter h94/IP-Adapter"):
        img2img.load(hub, "cpu")
    nowhere = sd_entry(tiny["sd"], ip_adapter=str(tiny["sd"] / "nope"), ip_adapter_weight_name="x.bin")
    assert registry.check(nowhere).startswith("needs weights: ip-adapter ")
    unnamed = sd_entry(tiny["sd"], ip_adapter="h94/IP-Adapter")
    assert registry.check(unnamed).startswith("misconfigured: ref: ip_adapter needs ip_adapter_weight_name")


def test_a_tiny_ip_adapter_steers_the_remix_with_several_references(tiny, coffee, references):
    from tests.engine.tiny_pipelines import IP_ADAPTER_WEIGHTS

    steered = sd_entry(tiny["sd"], ip_adapter=str(tiny["ip"]), ip_adapter_weight_name=IP_ADAPTER_WEIGHTS)
    plain = sd_entry(tiny["sd"])
    assert registry.check(steered) is None
    model = registry.kind_of(steered).load(steered, "cpu")
    source = coffee.resize((64, 40))

    def remix(entry, model, refs=(), **request) -> np.ndarray:
        (out,) = model.run(
            remix_work(source, refs, entry, prompt="a cup", strength=0.6, **request), lambda step, total: None
        )
        return np.asarray(out).astype(int)

    both = remix(steered, model, references)
    assert np.array_equal(remix(steered, model, references), both)  # the same seed repeats
    one = remix(steered, model, references[:1])
    unsteered = remix(plain, registry.kind_of(plain).load(plain, "cpu"))
    assert np.abs(both - unsteered).mean() > 3 and np.abs(both - one).mean() > 1
    assert np.array_equal(remix(steered, model), unsteered)  # no references: the adapter at scale 0
    assert np.array_equal(remix(steered, model, references, ip_adapter_scale=0.0), unsteered)
    weaker = remix(steered, model, references, ip_adapter_scale=0.2)
    assert 0 < np.abs(weaker - unsteered).mean() < np.abs(both - unsteered).mean()
