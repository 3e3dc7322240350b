"""The fast CPU path of diffusers-img2img on the tiny pipeline: the prompt-embedding cache, the tiny
autoencoder (TAESD's real architecture, random weights), and previews from the step callback."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bot.jobs import Action, Request  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine import preview  # noqa: E402
from engine.kinds import img2img, prompts  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_models import build_taesd  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def taesd(tmp_path_factory) -> Path:
    return build_taesd(tmp_path_factory.mktemp("taesd") / "taesd")


def work(
    entry: ModelEntry,
    prompt: str = "a red cup",
    negative: str = "",
    seed: int = 1,
    loras: tuple[tuple[str, float], ...] = (),
    lora_files: dict[str, Path] | None = None,
    sink=None,
) -> Work:
    request = Request(prompt=prompt, negative_prompt=negative, model=entry.name, strength=0.6, seed=seed, loras=loras)
    return Work(
        action=Action.reroll,
        request=request,
        entry=entry,
        image=Image.new("RGB", (64, 64), (180, 90, 40)),
        references=(),
        seeds=(seed,),
        device="cpu",
        lora_files=lora_files or {},
        preview=sink,
    )


class EncoderCalls:
    """Counts the text encoder's forward passes (a torch forward hook: the model itself runs as it is)."""

    def __init__(self, pipe):
        self.count = 0
        self._handle = pipe.text_encoder.register_forward_hook(self._seen)

    def _seen(self, module, args, output) -> None:
        self.count += 1


def pixels(model, w: Work) -> np.ndarray:
    return np.asarray(model.run(w, lambda step, total: None)[0]).astype(int)


# --- the prompt-embedding cache ---------------------------------------------------------------------


def test_a_reroll_reuses_the_embeddings_and_draws_the_same_pixels_as_without_the_cache(entry):
    cached = img2img.load(entry, "cpu")
    plain = img2img.load(replace(entry, options={"prompt_cache": 0}), "cpu")
    calls = EncoderCalls(cached.pipe)
    first = pixels(cached, work(entry, seed=1))
    encoded = calls.count
    assert encoded > 0 and len(cached.prompt_cache) == 2  # the prompt and the (empty) negative prompt
    again = pixels(cached, work(entry, seed=2))  # a reroll: same prompt, new seed
    assert calls.count == encoded and cached.prompt_cache.hits >= 2
    assert np.array_equal(again, pixels(plain, work(entry, seed=2)))  # identical to the uncached run
    assert np.array_equal(first, pixels(plain, work(entry, seed=1)))
    pixels(cached, work(entry, negative="blurry", seed=2))  # a new negative prompt: encoded, the prompt is not
    assert calls.count > encoded and len(cached.prompt_cache) == 3
    assert len(plain.prompt_cache) == 0  # prompt_cache = 0: nothing kept


def test_the_cache_is_bounded_least_recently_used_first(entry):
    model = img2img.load(replace(entry, options={"prompt_cache": 3}), "cpu")
    for prompt in ("one cup", "two cups", "three cups"):
        model.call_kwargs([work(entry, prompt)], lambda step, total: None)
    assert len(model.prompt_cache) == 3  # two prompts + the empty negative one: full
    calls = EncoderCalls(model.pipe)
    model.call_kwargs([work(entry, "three cups")], lambda step, total: None)
    assert calls.count == 0  # still there
    model.call_kwargs([work(entry, "one cup")], lambda step, total: None)
    assert calls.count == 1 and len(model.prompt_cache) == 3  # "one cup" had gone first: encoded again


def test_the_cache_key_names_the_model_the_loras_and_the_syntax(entry):
    cache = prompts.PromptCache(8)
    model = img2img.load(entry, "cpu")
    with torch.inference_mode():
        a = prompts.call_kwargs(model.pipe, ["a (red:1.3) cup"], [""], cache, ("tiny", ()))
        b = prompts.call_kwargs(model.pipe, ["a (red:1.3) cup"], [""], cache, ("other", ()))
    assert cache.misses == 4 and cache.hits == 0 and len(cache) == 4  # another model: its own entries
    assert torch.equal(a["prompt_embeds"], b["prompt_embeds"])
    assert all(key[1] == prompts.SYNTAX for key in cache._entries)


def test_a_different_lora_gets_new_embeddings(entry, tiny_sd, tmp_path):
    pytest.importorskip("peft")
    from tests.engine.test_loras import build_tiny_lora

    files = {"pixel": build_tiny_lora(tiny_sd, tmp_path / "pixel.safetensors", seed=2, text_encoder=True)}
    model = img2img.load(entry, "cpu")
    calls = EncoderCalls(model.pipe)

    def embeds(loras):
        w = work(entry, loras=loras, lora_files=files)
        model.loras.activate(model.pipe, w)
        with torch.inference_mode():
            return model.call_kwargs([w], lambda step, total: None)["prompt_embeds"]

    none = embeds(())
    seen = calls.count
    full = embeds((("pixel", 1.0),))
    assert calls.count > seen and not torch.allclose(none, full)  # its text-encoder layers change them
    seen = calls.count
    half = embeds((("pixel", 0.5),))
    assert calls.count > seen and not torch.allclose(full, half)  # another weight: another key
    seen = calls.count
    assert torch.equal(embeds((("pixel", 1.0),)), full) and calls.count == seen  # back to a cached one
    assert torch.equal(embeds(()), none) and calls.count == seen


# --- the tiny autoencoder -------------------------------------------------------------------------


def test_tiny_vae_encodes_and_decodes_with_taesd(entry, taesd):
    fast = replace(entry, options={"tiny_vae": str(taesd)})
    assert img2img.check(fast) is None
    model = img2img.load(fast, "cpu")
    assert type(model.pipe.vae).__name__ == "AutoencoderTiny" and model.tiny_vae
    decoded: list[tuple] = []
    model.pipe.vae.decoder.register_forward_hook(lambda module, args, output: decoded.append(output.shape))
    image = model.run(work(fast), lambda step, total: None)[0]
    assert image.size == (64, 64) and decoded == [(1, 3, 64, 64)]  # TAESD drew the output
    again = model.run(work(fast), lambda step, total: None)[0]
    assert np.array_equal(np.asarray(image), np.asarray(again))  # seeded: same seed, same pixels


def test_tiny_vae_that_is_not_here_is_a_clear_reason(entry, tmp_path):
    def reason(value) -> str | None:
        return img2img.check(replace(entry, options={"tiny_vae": value}))

    assert (
        reason(str(tmp_path / "nowhere"))
        == f"needs weights: tiny_vae {tmp_path / 'nowhere'} not found (a diffusers model folder or a hub id)"
    )
    assert "has no config.json" in (reason(str(tmp_path)) or "")
    with_cache = replace(entry, options={"tiny_vae": "madebyollin/taesd", "cache_dir": str(tmp_path)})
    assert img2img.check(with_cache) == (
        "needs weights: download madebyollin/taesd first (hf download madebyollin/taesd) for tiny_vae"
    )
    assert (reason(3) or "").startswith("misconfigured: tiny_vae = 3")
    assert (img2img.check(replace(entry, options={"prompt_cache": -1})) or "").startswith("misconfigured: prompt_cache")
    assert (img2img.check(replace(entry, options={"preview": "yes"})) or "").startswith("misconfigured: preview")


# --- previews -------------------------------------------------------------------------------------


def jpeg_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "JPEG"
    return image


@pytest.mark.parametrize("tiny", [False, True], ids=["projection", "taesd"])
def test_a_run_sends_throttled_previews_of_its_latents(entry, taesd, tiny):
    options = {"tiny_vae": str(taesd)} if tiny else {}
    longer = replace(entry, options=options, num_inference_steps=10)  # 6 denoising steps
    model = img2img.load(longer, "cpu")
    shown: list[tuple[int, int, bytes]] = []
    steps: list[tuple[int, int]] = []
    model.run(
        work(longer, sink=lambda step, total, data: shown.append((step, total, data))),
        lambda s, t: steps.append((s, t)),
    )
    total = steps[-1][1]
    assert total == 6 and shown and shown[0][:2] == (1, total)  # the first at once, then every INTERVAL s
    assert all(step < total for step, _, _ in shown)  # none at the last step: the result follows
    assert len(shown) == 1  # this run takes well under preview.INTERVAL seconds
    image = jpeg_image(shown[0][2])
    assert max(image.size) <= preview.MAX_SIDE and len(set(image.convert("L").getdata())) > 1


def test_no_previews_when_off_or_unwatched(entry):
    off = img2img.load(replace(entry, options={"preview": False}), "cpu")
    shown: list = []
    off.run(work(entry, sink=lambda *args: shown.append(args)), lambda s, t: None)
    assert shown == []
    model = img2img.load(entry, "cpu")
    model.run(work(entry), lambda s, t: None)  # no sink: nothing rendered, nothing fails


def test_the_throttle_holds_over_a_long_run(entry):
    import time

    interval = 0.2
    longer = replace(entry, num_inference_steps=20, options={"preview_interval": interval})
    model = img2img.load(longer, "cpu")
    shown: list[float] = []
    started = time.monotonic()
    model.run(work(longer, sink=lambda s, t, data: shown.append(time.monotonic())), lambda s, t: time.sleep(0.3))
    elapsed = time.monotonic() - started  # 12 denoising steps, at least 3.6 s
    assert 2 <= len(shown) <= 1 + elapsed / interval
    assert all(later - earlier >= interval for earlier, later in zip(shown, shown[1:], strict=False))


def test_bfloat16_on_the_cpu_is_nhwc_and_previews_through_taesd(entry, taesd):
    fast = replace(entry, options={"tiny_vae": str(taesd), "cpu_dtype": "bfloat16"}, num_inference_steps=10)
    model = img2img.load(fast, "cpu")
    assert model.speed["dtype"] == "bfloat16" and model.speed["channels_last"] is True
    for module in (model.pipe.unet, model.pipe.vae):
        weight = next(p for p in module.parameters() if p.dim() == 4)
        assert weight.dtype == torch.bfloat16 and weight.is_contiguous(memory_format=torch.channels_last)
    shown: list[bytes] = []
    [image] = model.run(work(fast, sink=lambda s, t, data: shown.append(data)), lambda s, t: None)
    assert image.size == (64, 64) and len(shown) == 1 and max(jpeg_image(shown[0]).size) <= preview.MAX_SIDE
