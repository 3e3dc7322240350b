"""Live previews of a diffusion job: its current latents as a small JPEG, cheap enough for every step.

The latents are projected to RGB with a fixed linear map (4 latent channels → 3 colours, plus a
bias), the well-known approximation of the VAE decoder used by ComfyUI and A1111 for their
previews: a matrix product on a 64×64 latent (512² image), far below a millisecond, against seconds
for a UNet step. ``LatentPreview`` throttles: it renders at most once per ``interval`` seconds and
returns None in between, so a step callback can ask at every step.

It works on the pipeline's latents as they stand during denoising (scaled by the VAE's scaling
factor, as diffusers keeps them); the same factors serve SD 1.x and 2.x (one VAE), SDXL has its own.

A model whose entry has ``tiny_vae`` (TAESD) decodes its previews with it instead (``tiny_vae_rgb``):
real colours and edges, from latents first shrunk to the preview's size, so the decoder draws
256 px, not 512 (a quarter of the work).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

# latent channel -> (R, G, B) weights, and the bias, per latent family (ComfyUI's latent_formats.py)
FACTORS: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "sd": (
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        ),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        (
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        (0.1084, -0.0175, -0.0011),
    ),
}
MAX_SIDE = 256  # px: a preview is a thumbnail, small enough for a chat status every few seconds
INTERVAL = 3.0  # seconds between two previews of one job at most this often
SHARE = 0.05  # of a job's time that previews may take: a slow render (TAESD on a busy CPU) waits longer


def family(pipe: Any) -> str:
    """The latent family of a diffusers pipeline: "sdxl" for SDXL pipelines, else "sd" (1.x and 2.x)."""
    return "sdxl" if "XL" in type(pipe).__name__ else "sd"


def latent_rgb(latents: Any, kind: str = "sd", max_side: int = MAX_SIDE) -> Image.Image:
    """The first image of a (batch, 4, h, w) latent tensor as RGB, its longest side at most ``max_side``."""
    import numpy as np

    factors, bias = FACTORS[kind]
    latent = latents[0].detach().float().cpu().numpy()  # (4, h, w)
    rgb = np.tensordot(latent, np.asarray(factors, dtype=np.float32), axes=(0, 0)) + np.asarray(bias, np.float32)
    array = ((rgb + 1) * 127.5).round().clip(0, 255).astype(np.uint8)  # (h, w, 3)
    image = Image.fromarray(array, "RGB")
    height, width = array.shape[:2]
    scale = max_side / max(height, width)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)


def tiny_vae_rgb(vae: Any, latents: Any, max_side: int = MAX_SIDE) -> Image.Image:
    """The first image of a latent tensor decoded by a diffusers ``AutoencoderTiny`` (TAESD), its
    longest side at most ``max_side``: the latents are resized to the preview's size before decoding."""
    import torch
    import torch.nn.functional as F

    latent = latents[:1].detach()
    height, width = latent.shape[-2:]
    scale = max_side / (8 * max(height, width))
    with torch.inference_mode():
        if scale < 1:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            latent = F.interpolate(latent.float(), size=size, mode="bilinear", antialias=True)
        scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        decoded = vae.decode(latent.to(device=vae.device, dtype=vae.dtype) / scaling).sample[0]
        pixels = ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    image = Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy(), "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return image


def jpeg(image: Image.Image, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class RenderCost:
    """What one model's last preview render took, shared by the previews of its jobs."""

    seconds: float = 0.0


class LatentPreview:
    """Renders a job's latents as JPEG bytes at most once per ``interval`` seconds (None in between):
    the linear projection of the ``kind`` family, or ``decoder(latents, max_side)`` when given (TAESD).

    After a render that took ``d`` seconds the next waits at least ``d / share`` seconds too, so
    previews never take more than ``share`` of the job's time, however slow the machine is. With a
    ``cost`` shared across a model's jobs, a job's first preview waits for the last render's ``d /
    share`` too (from the job's start): a job shorter than that gets none, so it is not slowed
    either (a render in a new job can cost more than a warm one: oneDNN builds kernels for its shapes)."""

    def __init__(
        self,
        kind: str = "sd",
        interval: float = INTERVAL,
        max_side: int = MAX_SIDE,
        clock: Callable[[], float] = time.monotonic,
        decoder: Callable[[Any, int], Image.Image] | None = None,
        share: float = SHARE,
        cost: RenderCost | None = None,
    ):
        self.kind, self.interval, self.max_side, self.clock = kind, interval, max_side, clock
        self.decoder, self.share = decoder, share
        self.cost = cost if cost is not None else RenderCost()
        first = self.cost.seconds / share if share > 0 else 0.0
        self._next: float | None = clock() + first if first > 0 else None  # no preview before this time

    def __call__(self, latents: Any) -> bytes | None:
        now = self.clock()
        if self._next is not None and now < self._next:
            return None
        if self.decoder is not None:
            data = jpeg(self.decoder(latents, self.max_side))
        else:
            data = jpeg(latent_rgb(latents, self.kind, self.max_side))
        took = self.clock() - now
        self.cost.seconds = took
        self._next = now + max(self.interval, took / self.share if self.share > 0 else 0.0)
        return data
