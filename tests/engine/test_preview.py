"""Latent previews: the linear latent→RGB projection, its size bound, the throttle, a real pipeline's latents."""

from __future__ import annotations

import io

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from engine import preview  # noqa: E402


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_projection_uses_the_family_factors_and_bounds_the_size():
    latents = torch.zeros(1, 4, 64, 96)
    latents[0, 0] = 1.0  # only the first channel: its RGB weights (+1) * 127.5
    image = preview.latent_rgb(latents, "sd")
    assert image.size == (256, 171)
    assert image.getpixel((128, 85)) == (172, 157, 169)
    xl = preview.latent_rgb(latents, "sdxl", max_side=64)
    assert xl.size == (64, 43)
    assert xl.getpixel((32, 20)) == (188, 179, 183)  # its own factors and bias


def test_preview_is_throttled():
    now = [100.0]
    previews = preview.LatentPreview(interval=3.0, clock=lambda: now[0])
    latents = torch.randn(2, 4, 8, 8)
    first = previews(latents)
    assert first is not None and decode(first).format == "JPEG"
    now[0] += 2.9
    assert previews(latents) is None
    now[0] += 0.2
    assert previews(latents) is not None


def test_a_slow_preview_waits_longer_so_previews_keep_within_their_share():
    now = [0.0]

    def slow(latents, side):  # a decoder that takes 0.5 s of the (fake) clock
        now[0] += 0.5
        return Image.new("RGB", (side, side))

    previews = preview.LatentPreview(interval=3.0, clock=lambda: now[0], decoder=slow, share=0.05)
    latents = torch.randn(1, 4, 8, 8)
    times = []
    while now[0] < 60:
        if previews(latents) is not None:
            times.append(now[0])
        now[0] += 1.0  # a step
    assert len(times) >= 5 and all(b - a >= 0.5 / 0.05 for a, b in zip(times, times[1:], strict=False))
    assert 0.5 * len(times) <= 0.05 * now[0] + 0.5  # within the share (plus the first render)


def test_a_jobs_first_preview_waits_for_what_the_last_render_cost():
    now = [0.0]

    def slow(latents, side):  # 0.4 s of the (fake) clock, as a cold TAESD render in a new job may take
        now[0] += 0.4
        return Image.new("RGB", (side, side))

    cost = preview.RenderCost()
    latents = torch.randn(1, 4, 8, 8)
    first_job = preview.LatentPreview(interval=3.0, clock=lambda: now[0], decoder=slow, cost=cost)
    assert first_job(latents) is not None and cost.seconds == pytest.approx(0.4)  # nothing known yet: at once
    started = now[0] = 100.0
    short_job = preview.LatentPreview(interval=3.0, clock=lambda: now[0], decoder=slow, cost=cost)
    while now[0] < started + 7.9:  # a job shorter than 0.4 / 0.05 = 8 s: no preview at all
        assert short_job(latents) is None
        now[0] += 1.0
    now[0] = started + 8.0
    assert short_job(latents) is not None, "a longer job gets its preview once it has run 8 s"


def test_preview_of_a_real_pipelines_latents(tiny_sd, one_torch_thread):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(tiny_sd))
    pipe.set_progress_bar_config(disable=True)
    assert preview.family(pipe) == "sd"
    previews = preview.LatentPreview(preview.family(pipe), interval=0.0, share=0.0)  # every step
    shown: list[bytes] = []

    def on_step_end(pipe, step, timestep, kwargs):
        shown.append(previews(kwargs["latents"]))
        return kwargs

    source = Image.new("RGB", (64, 64), (200, 80, 40))
    pipe("a cup", image=source, strength=0.6, num_inference_steps=5, callback_on_step_end=on_step_end)
    assert len(shown) == 3
    image = decode(shown[-1])
    assert image.size == (256, 256)
    assert len(set(image.getdata())) > 1  # drawn from the latents, not a flat fill
