"""The ``upscale-spandrel`` model kind: super-resolution models loaded with spandrel, run in tiles.

``source`` is a weights file that spandrel loads (``engine.kinds.weights``); it tells the
architecture and its native scale. The image is cut into tiles of at most ``tile`` px a side, each
carrying ``overlap`` px of its neighbours as context; only each tile's core is kept. Memory is then
bounded by the tile size whatever the image size, and seams vanish once the overlap covers the
network's receptive radius (a convolutional net gives the untiled result, to rounding). When the
asked factor (``--scale``) differs from the model's own, each tile's output is resized with Lanczos
to that factor before its core is kept. A tile that runs out of memory is retried at half the size.
docs/models.md lists the options.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.kinds import sources, weights
from engine.work import Kind, UserFacingError, Work

log = logging.getLogger(__name__)

TILE = 512
OVERLAP = 32
MAX_SIDE = 8192
MIN_TILE = 128  # halving the tile after an out-of-memory error stops here
DEFAULT_SCALE = 2
MAX_SCALE = 8


def factor_of(scale: int | None) -> int:
    """The upscale factor a request asks for (``--scale``), default 2."""
    factor = DEFAULT_SCALE if scale is None else int(scale)
    if not 1 <= factor <= MAX_SCALE:
        raise UserFacingError(f"The upscale factor must be 2 or 4, not {factor}.")
    return factor


def output_size(size: tuple[int, int], factor: int, max_side: int) -> tuple[int, int]:
    """The upscaled (width, height); a user-facing refusal when its longest side passes ``max_side``."""
    width, height = size[0] * factor, size[1] * factor
    if max(width, height) > max_side:
        side, word = (width, "wide") if width >= height else (height, "tall")
        raise UserFacingError(
            f"That would be {side} px {word}; the limit is {max_side} px. "
            "Upscale a smaller image, or ask for less (--scale 2)."
        )
    return width, height


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) cores along one axis: one when ``length`` fits in a tile, else cores of at most
    ``tile - 2 * overlap`` (each tile is its core plus ``overlap`` on both sides), evenly sized."""
    core = tile - 2 * overlap
    count = 1 if length <= tile else math.ceil(length / core)
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def upscale(
    descriptor: Any, pixels: np.ndarray, factor: int, tile: int, overlap: int, progress: Progress
) -> Image.Image:
    """uint8 RGB (H, W, 3) upscaled by ``factor`` with the model, tile by tile, straight into the
    output image (no second full-size buffer). ``progress(done, tiles)`` after every tile."""
    import torch

    height, width = pixels.shape[:2]
    native = descriptor.scale
    out = Image.new("RGB", (width * factor, height * factor))
    rows, columns = spans(height, tile, overlap), spans(width, tile, overlap)
    total, done = len(rows) * len(columns), 0
    with torch.inference_mode():
        for y0, y1 in rows:
            for x0, x1 in columns:
                # the tile: the core and its context, clipped to the image
                cy0, cy1 = max(0, y0 - overlap), min(height, y1 + overlap)
                cx0, cx1 = max(0, x0 - overlap), min(width, x1 + overlap)
                piece = weights.to_pixels(descriptor(weights.to_tensor(pixels[cy0:cy1, cx0:cx1], descriptor)))
                if native != factor:
                    size = ((cx1 - cx0) * factor, (cy1 - cy0) * factor)
                    piece = np.asarray(Image.fromarray(piece).resize(size, Image.Resampling.LANCZOS))
                core = piece[(y0 - cy0) * factor : (y1 - cy0) * factor, (x0 - cx0) * factor : (x1 - cx0) * factor]
                out.paste(Image.fromarray(np.ascontiguousarray(core)), (x0 * factor, y0 * factor))
                done += 1
                progress(done, total)
    return out


@dataclass
class UpscaleModel:
    descriptor: Any  # a spandrel ImageModelDescriptor
    label: str
    tile: int = TILE
    overlap: int = OVERLAP
    max_side: int = MAX_SIDE

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        factor = factor_of(work.request.scale)
        source = work.image.convert("RGB")
        output_size(source.size, factor, self.max_side)
        pixels = np.asarray(source)
        tile = self.tile if self.descriptor.tiling.name != "INTERNAL" else max(source.size)
        while True:
            try:
                out = upscale(self.descriptor, pixels, factor, tile, self.overlap, progress)
                break
            except Exception as error:
                smallest = max(MIN_TILE, 2 * self.overlap + 16)
                if not (weights.is_out_of_memory(error) and tile // 2 >= smallest):
                    raise
                _free_cuda()
                log.warning("%s: out of memory at %d px tiles; retrying at %d", self.label, tile, tile // 2)
                tile //= 2
        if factor != self.descriptor.scale:
            work.notes.append(f"×{self.descriptor.scale} model, resized to ×{factor}")
        return [out] + [out.copy() for _ in work.seeds[1:]]


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def options(entry: ModelEntry) -> tuple[int, int, int]:
    """(tile, overlap, max_side) from the entry; ValueError with a user-safe message when out of range."""
    tile = weights.int_option(entry, "tile", TILE, 64, 4096)
    overlap = weights.int_option(entry, "overlap", OVERLAP, 0, 512)
    if tile - 2 * overlap < 16:
        raise ValueError(
            f"misconfigured: overlap = {overlap} leaves no room in tile = {tile} for "
            f"{entry.name} (keep overlap under a third of tile)"
        )
    max_side = weights.int_option(entry, "max_side", MAX_SIDE, 64, 65536)
    return tile, overlap, max_side


def check(entry: ModelEntry) -> str | None:
    """None when the weights file is here and the options make sense; never imports torch."""
    try:
        options(entry)
    except ValueError as error:
        return str(error)
    return sources.dtype_problem(entry) or weights.weights_problem(entry)


def load(entry: ModelEntry, device: str) -> UpscaleModel:
    tile, overlap, max_side = options(entry)
    descriptor = weights.load_descriptor(entry, device)
    name = weights.architecture(descriptor)
    if descriptor.purpose == "FaceSR":
        raise UserFacingError(
            f'misconfigured: {entry.name} is a face model ({name}): use it with kind = "face-restore"'
        )
    return UpscaleModel(
        descriptor=descriptor,
        label=f"spandrel {name} ×{descriptor.scale}",
        tile=tile,
        overlap=overlap,
        max_side=max_side,
    )


KIND = Kind(check=check, load=load)
