"""The classic model kind: real image operations on real photos, no torch."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, JobCancelled, Request
from bot.models import ModelEntry
from engine.kinds import classic
from engine.work import Work

REPO = Path(__file__).resolve().parents[2]
from tests.fixtures import IMAGES  # noqa: E402

ENTRY = ModelEntry(name="classic", kind="classic")
PHOTOS = ("coffee.png", "astronaut.png")


@functools.cache
def photo(name: str) -> Image.Image:
    with Image.open(IMAGES / name) as image:
        return image.convert("RGB")


def make_work(
    image: Image.Image,
    prompt: str = "",
    *,
    strength: float = 1.0,
    seeds=(1,),
    action: Action = Action.remix,
    negative_prompt: str = "",
    scale: int | None = None,
) -> Work:
    request = Request(
        prompt=prompt,
        model="classic",
        strength=strength,
        negative_prompt=negative_prompt,
        seed=seeds[0],
        num_images_per_prompt=len(seeds),
        scale=scale,
    )
    return Work(
        action=action, request=request, entry=ENTRY, image=image, references=(), seeds=tuple(seeds), device="cpu"
    )


def run(work: Work, progress=None) -> list[Image.Image]:
    return classic.load(ENTRY, "cpu").run(work, progress or (lambda step, total: None))


@functools.cache
def _result(name: str, prompt: str, strength: float, seed: int, negative_prompt: str) -> np.ndarray:
    work = make_work(photo(name), prompt, strength=strength, seeds=(seed,), negative_prompt=negative_prompt)
    out = run(work)
    assert len(out) == 1
    array = np.asarray(out[0])
    array.flags.writeable = False
    return array


def result(name: str, prompt: str, *, strength: float = 1.0, seed: int = 1, negative_prompt: str = "") -> np.ndarray:
    """The output as uint8 (H, W, 3), cached: several tests look at the same runs."""
    return _result(name, prompt, strength, seed, negative_prompt)


def source(name: str) -> np.ndarray:
    return np.asarray(photo(name))


def as_float(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) / 255.0


def luma(array: np.ndarray) -> np.ndarray:
    return as_float(array) @ np.array([0.299, 0.587, 0.114])


def red_blue(array: np.ndarray) -> float:
    f = as_float(array)
    return float(f[..., 0].mean() / f[..., 2].mean())


def saturation(array: np.ndarray) -> float:
    f = as_float(array)
    return float((f.max(axis=2) - f.min(axis=2)).mean())


def laplacian_variance(array: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(array).astype(np.float32), cv2.CV_32F).var())


def unique_colours(array: np.ndarray) -> int:
    packed = array.astype(np.int32)
    return len(np.unique(packed[..., 0] << 16 | packed[..., 1] << 8 | packed[..., 2]))


def is_grey(array: np.ndarray) -> bool:
    return bool((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all())


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


ALL_PROMPTS = ("", *classic.KEYWORDS)


# --- the interface -----------------------------------------------------------------------------


def test_check_and_load():
    assert classic.check(ENTRY) is None
    model = classic.load(ENTRY, "cpu")
    assert model.label == "classic"


def test_keywords_are_public_and_documented():
    assert set(classic.KEYWORDS) >= {
        "warm",
        "cool",
        "cinematic",
        "noir",
        "vintage",
        "vivid",
        "sketch",
        "watercolor",
        "cartoon",
        "oil",
        "detail",
    }
    guide = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    for keyword, synonyms in classic.SYNONYMS.items():
        assert f"| `{keyword}` |" in guide
        assert all(word in guide for word in synonyms), f"{keyword}: not every synonym is in docs/models.md"
    assert "cold" in classic.SYNONYMS["cool"]
    assert "sepia" in classic.SYNONYMS["vintage"]
    assert "pencil" in classic.SYNONYMS["sketch"]
    assert "watercolour" in classic.SYNONYMS["watercolor"]
    assert "comic" in classic.SYNONYMS["cartoon"]
    assert "painting" in classic.SYNONYMS["oil"]
    assert {"sharp", "enhance"} <= set(classic.SYNONYMS["detail"])


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_output_is_rgb_and_source_sized(name, prompt):
    out = run(make_work(photo(name), prompt, seeds=(5, 6)))
    assert len(out) == 2
    for image in out:
        assert image.mode == "RGB"
        assert image.size == photo(name).size


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (17, 9), (64, 48)])
def test_tiny_images_work(prompt, size):
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    (out,) = run(make_work(Image.fromarray(noise), prompt))
    assert out.size == size and out.mode == "RGB"


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (120, 80, 60)])
def test_flat_images_work(prompt, colour):
    (out,) = run(make_work(Image.new("RGB", (40, 30), colour), prompt))
    assert out.size == (40, 30)
    assert np.isfinite(np.asarray(out, np.float32)).all()


def test_other_modes_are_converted():
    grey = photo("coffee.png").convert("L")
    (out,) = run(make_work(grey, "warm"))
    assert out.mode == "RGB" and out.size == grey.size


# --- the prompt ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "negative", "expected"),
    [
        ("warm cinematic watercolor", "", ["warm", "cinematic", "watercolor"]),
        ("Watercolor, WARM", "", ["watercolor", "warm"]),
        ("a cold morning", "", ["cool"]),
        ("sepia portrait", "", ["vintage"]),
        ("black and white photo", "", ["noir"]),
        ("b&w", "", ["noir"]),
        ("teal and orange", "", ["cinematic"]),
        ("pencil sketch", "", ["sketch"]),
        ("a pencil drawing", "", ["sketch"]),
        ("a cartoon drawing", "", ["cartoon"]),
        ("comic book style", "", ["cartoon"]),
        ("water colour", "", ["watercolor"]),
        ("an oil painting", "", ["oil"]),
        ("a painting", "", ["oil"]),
        ("a watercolor painting of a cat", "", ["watercolor"]),
        ("sharp and vivid", "", ["detail", "vivid"]),
        ("warm warm warm", "", ["warm"]),
        ("a cat on a sofa", "", ["polish"]),
        ("", "", ["polish"]),
        ("warm vintage", "sepia", ["warm"]),
        ("warm vintage", "blurry, lowres, retro", ["warm"]),
        ("vintage look, no sepia", "", ["polish"]),
        ("noir without grain", "", ["noir"]),
        ("warm", "warm", ["polish"]),
    ],
)
def test_effects_for(prompt, negative, expected):
    assert classic.effects_for(prompt, negative) == expected


def test_prompt_keywords_are_case_insensitive():
    assert np.array_equal(result("coffee.png", "WARM Sketch"), result("coffee.png", "warm sketch"))


def test_negative_prompt_removes_an_effect():
    assert np.array_equal(result("coffee.png", "warm vintage", negative_prompt="sepia"), result("coffee.png", "warm"))


def test_no_grain_drops_the_grain():
    grainy = result("astronaut.png", "noir")
    clean = result("astronaut.png", "noir", negative_prompt="grain")
    assert not np.array_equal(grainy, clean)
    assert is_grey(clean)
    # grain is fine detail: without it, less high-frequency energy
    assert laplacian_variance(clean) < laplacian_variance(grainy)


# --- each effect does what it says ---------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_warm_raises_red_over_blue(name):
    assert red_blue(result(name, "warm")) > red_blue(source(name)) * 1.1


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("prompt", ["cool", "cold"])
def test_cool_lowers_red_over_blue(name, prompt):
    assert red_blue(result(name, prompt)) < red_blue(source(name)) * 0.9


@pytest.mark.parametrize("name", PHOTOS)
def test_cinematic_is_teal_in_the_shadows_and_orange_in_the_highlights(name):
    def tones(array):
        f = as_float(array)
        lum = luma(array)
        dark, bright = lum < np.quantile(lum, 0.3), lum > np.quantile(lum, 0.7)
        return (f[..., 2] - f[..., 0])[dark].mean(), (f[..., 0] - f[..., 2])[bright].mean()

    before_teal, before_orange = tones(source(name))
    after_teal, after_orange = tones(result(name, "cinematic"))
    assert after_teal > before_teal + 0.05
    assert after_orange > before_orange


@pytest.mark.parametrize("name", PHOTOS)
def test_noir_is_grey_with_more_contrast(name):
    out = result(name, "noir")
    assert is_grey(out)
    assert luma(out).std() > luma(source(name)).std()


@pytest.mark.parametrize("name", PHOTOS)
def test_vintage_is_faded_sepia(name):
    out = result(name, "sepia")
    f = as_float(out)
    assert saturation(out) < saturation(source(name))
    assert f[..., 0].mean() > f[..., 1].mean() > f[..., 2].mean()  # brown
    assert luma(out).std() < luma(source(name)).std()  # faded
    assert np.quantile(luma(out), 0.01) > np.quantile(luma(source(name)), 0.01)  # lifted blacks


@pytest.mark.parametrize("name", PHOTOS)
def test_vivid_raises_saturation(name):
    assert saturation(result(name, "vivid")) > saturation(source(name)) * 1.1


@pytest.mark.parametrize("name", PHOTOS)
def test_sketch_is_mostly_light_grey(name):
    out = result(name, "pencil sketch")
    assert is_grey(out)
    lum = luma(out)
    assert np.median(lum) > 0.7
    assert (lum > 0.5).mean() > 0.65
    assert lum.min() < 0.3  # there are strokes


@pytest.mark.parametrize("name", PHOTOS)
def test_watercolor_is_lighter_and_softer(name):
    out = result(name, "watercolor")
    assert luma(out).mean() > luma(source(name)).mean()
    assert laplacian_variance(out) < 0.5 * laplacian_variance(source(name))


@pytest.mark.parametrize("name", PHOTOS)
def test_cartoon_has_few_colours_and_ink(name):
    out = result(name, "cartoon")
    assert unique_colours(out) < min(400, unique_colours(source(name)) // 100)
    assert (luma(out) < 0.1).mean() > 0.01  # dark outlines


def test_oil_smooths_into_strokes():
    out = result("coffee.png", "oil painting")
    assert laplacian_variance(out) < 0.5 * laplacian_variance(source("coffee.png"))
    assert saturation(out) >= saturation(source("coffee.png"))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("prompt", ["detail", "sharp", "enhance"])
def test_detail_adds_high_frequency_energy(name, prompt):
    assert laplacian_variance(result(name, prompt)) > 1.5 * laplacian_variance(source(name))


@pytest.mark.parametrize("name", PHOTOS)
def test_no_keyword_is_a_mild_enhance_not_a_no_op(name):
    out = result(name, "a photo of something")
    assert not np.array_equal(out, source(name))
    assert 0.5 < mean_abs_diff(out, source(name)) < 20
    assert laplacian_variance(out) > laplacian_variance(source(name))  # local contrast


def test_effects_combine_in_order():
    both = result("coffee.png", "warm sketch")
    assert is_grey(both)  # the sketch came last
    reversed_order = result("coffee.png", "sketch warm")
    assert not is_grey(reversed_order)  # warm tints the sketch
    assert red_blue(reversed_order) > 1.05


# --- strength ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_strength_zero_is_the_source(prompt):
    assert np.array_equal(result("coffee.png", prompt, strength=0.0), source("coffee.png"))


@pytest.mark.parametrize("prompt", ["warm", "noir", "watercolor", "cartoon"])
def test_half_strength_lies_between(prompt):
    src = source("coffee.png").astype(np.int16)
    full = result("coffee.png", prompt).astype(np.int16)
    half = result("coffee.png", prompt, strength=0.5).astype(np.int16)
    assert (half >= np.minimum(src, full) - 1).all()
    assert (half <= np.maximum(src, full) + 1).all()
    assert np.abs(half - (src + full) / 2).max() <= 1
    assert 0.4 < mean_abs_diff(half, src) / mean_abs_diff(full, src) < 0.6


def test_strength_is_clipped():
    assert np.array_equal(result("coffee.png", "warm", strength=1.7), result("coffee.png", "warm"))
    assert np.array_equal(result("coffee.png", "warm", strength=-1.0), source("coffee.png"))


# --- seeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_same_seed_same_bytes(prompt):
    first = run(make_work(photo("astronaut.png"), prompt, seeds=(42,)))[0]
    again = run(make_work(photo("astronaut.png"), prompt, seeds=(42,)))[0]
    assert first.tobytes() == again.tobytes()


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_different_seeds_differ_visibly(prompt):
    one, two = run(make_work(photo("astronaut.png"), prompt, seeds=(1, 2)))
    assert mean_abs_diff(np.asarray(one), np.asarray(two)) > 0.5


def test_an_output_depends_on_its_seed_only():
    batch = run(make_work(photo("coffee.png"), "vintage cartoon", seeds=(3, 9, 3)))
    alone = run(make_work(photo("coffee.png"), "vintage cartoon", seeds=(9,)))[0]
    assert batch[0].tobytes() == batch[2].tobytes()
    assert batch[1].tobytes() == alone.tobytes()


def test_large_seeds_work():
    (out,) = run(make_work(photo("coffee.png"), "warm", seeds=(2**63 - 1,)))
    assert out.size == photo("coffee.png").size


def test_does_not_touch_the_global_random_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    run(make_work(photo("coffee.png"), "watercolor cartoon oil sketch noir", seeds=(4,)))
    assert np.random.random() == expected


# --- progress and cancellation -------------------------------------------------------------------


def test_progress_counts_every_stage_of_every_seed():
    calls = []
    run(
        make_work(photo("coffee.png"), "warm cinematic watercolor", seeds=(1, 2)),
        lambda step, total: calls.append((step, total)),
    )
    totals = {total for _, total in calls}
    assert totals == {(3 + 1) * 2}  # three effects and the blend, for each of two seeds
    assert [step for step, _ in calls] == list(range(1, 9))


def test_progress_for_the_default_effect():
    calls = []
    run(make_work(photo("coffee.png"), "", seeds=(1,)), lambda step, total: calls.append((step, total)))
    assert calls == [(1, 2), (2, 2)]


def test_cancellation_propagates_and_stops_the_run():
    calls = []

    def cancel(step, total):
        calls.append(step)
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        run(make_work(photo("coffee.png"), "oil watercolor", seeds=(1, 2, 3)), cancel)
    assert calls == [1]


def test_cancellation_mid_run():
    def cancel_at_third(step, total):
        if step == 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        run(make_work(photo("coffee.png"), "warm", seeds=(1, 2, 3)), cancel_at_third)


# --- other actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [Action.reroll, Action.vary])
def test_reroll_and_vary_remix_too(action):
    (out,) = run(make_work(photo("coffee.png"), "warm", action=action))
    assert np.array_equal(np.asarray(out), result("coffee.png", "warm"))


@pytest.mark.parametrize(("scale", "factor"), [(None, 2), (2, 2), (4, 4)])
def test_upscale(scale, factor):
    small = photo("astronaut.png").resize((128, 96))
    calls = []
    out = run(
        make_work(small, "ignored", seeds=(1, 2), action=Action.upscale, scale=scale),
        lambda step, total: calls.append((step, total)),
    )
    assert len(out) == 2
    assert out[0].size == (128 * factor, 96 * factor)
    assert out[0].mode == "RGB"
    assert out[0].tobytes() == out[1].tobytes()
    assert calls and calls[-1][0] == calls[-1][1]
    # still the same picture
    back = np.asarray(out[0].resize(small.size, Image.Resampling.BOX))
    assert mean_abs_diff(back, np.asarray(small)) < 6


def test_upscale_doubles_a_photo():
    (out,) = run(make_work(photo("coffee.png"), "", action=Action.upscale))
    assert out.size == (1200, 800)


def test_upscale_cancellation_propagates():
    def cancel(step, total):
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        run(make_work(photo("coffee.png"), "", action=Action.upscale), cancel)


def test_every_action_but_cut_out_has_a_classic_version():
    # a cut-out needs the U²-Net-p mask (`remixbot weights install cutout`); without it the press gets
    # a friendly message instead (tests/engine/test_cutout.py, tests/adapters/discord/test_more_buttons.py)
    assert set(classic._ACTIONS) == set(Action) - {Action.cutout}


# --- no torch ------------------------------------------------------------------------------------


def test_runs_without_importing_torch():
    script = textwrap.dedent(f"""
        import sys
        from PIL import Image
        import engine.kinds.classic as classic
        assert "cv2" not in sys.modules, "importing classic should stay light"
        from bot.jobs import Action, Request
        from bot.models import ModelEntry
        from engine.work import Work
        image = Image.open({str(IMAGES / "coffee.png")!r}).convert("RGB")
        entry = ModelEntry(name="classic", kind="classic")
        model = classic.load(entry, "cpu")
        for action, prompt in [(Action.remix, " ".join(classic.KEYWORDS)), (Action.remix, ""),
                               (Action.upscale, "")]:
            request = Request(prompt=prompt, model="classic", strength=0.7)
            work = Work(action=action, request=request, entry=entry, image=image, references=(),
                        seeds=(1,), device="cpu")
            out = model.run(work, lambda step, total: None)
            assert len(out) == 1
        assert "torch" not in sys.modules, "classic imported torch"
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
