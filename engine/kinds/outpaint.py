"""Zoom out and pan: a larger canvas around the picture, its new border filled in.

``layout`` places the picture on the canvas (``zoom`` 1.5 or 2 around it, or half its width or height
added on one side for a ``pan``), keeping the canvas's longest side within ``max_side`` (the picture
is scaled down once when it must be) and its sides multiples of ``multiple``. ``fill_border`` is the
classic fill that runs everywhere: the border is the picture's reflected texture, fading with the
distance from the picture into the colours OpenCV's Telea inpainting spreads outwards, with a soft
blend in between. ``extend`` does both; the picture itself stays untouched, pixel for pixel, inside.
``redraw`` is the diffusion path for a diffusers model: the classic fill redrawn under a feathered
mask by the model's inpainting pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from bot.jobs import Progress
from engine.kinds import prompts
from engine.work import Work

MAX_SIDE = 1536  # the longest side a zoom out or pan grows to unless the request says
STRENGTH = 0.9  # the diffusion path redraws the classic fill this much
ZOOMS = (1.5, 2.0)
PANS = {"left": (1, 0, 0, 0), "up": (0, 1, 0, 0), "right": (0, 0, 1, 0), "down": (0, 0, 0, 1)}
PAN_SHARE = 0.5  # a pan adds half the picture's width (or height) on that side
_SMALL = 96  # Telea works on a canvas this small (longest side): its cost grows with the hole's area


@dataclass(frozen=True)
class Layout:
    canvas: tuple[int, int]  # width, height
    box: tuple[int, int, int, int]  # where the (scaled) picture goes: left, top, right, bottom


def layout(size: tuple[int, int], *, zoom: float | None, pan: str | None, max_side: int, multiple: int = 8) -> Layout:
    """Where the picture goes on the new canvas, and the canvas's size."""
    if pan is not None and pan not in PANS:
        raise ValueError(f"pan must be one of {', '.join(PANS)}, not {pan!r}")
    if pan is None and zoom not in ZOOMS:
        raise ValueError(f"zoom must be 1.5 or 2, not {zoom!r}")
    width, height = size
    if pan is not None:
        left, top, right, bottom = PANS[pan]
        grow_x, grow_y = (left + right) * PAN_SHARE, (top + bottom) * PAN_SHARE
        shares: tuple[float, float] = (left, top)  # all the new room is on one side
    else:
        grow_x = grow_y = float(zoom or 1) - 1
        shares = (0.5, 0.5)
    scale = min(1.0, max_side / max(width * (1 + grow_x), height * (1 + grow_y)))
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = tuple(_up_to(side * (1 + grow), multiple) for side, grow in zip(inner, (grow_x, grow_y), strict=True))
    if max(canvas) > max_side:  # rounding up to a multiple went past the cap: round down instead
        canvas = tuple(max(multiple, side - side % multiple) for side in canvas)
    x = round((canvas[0] - inner[0]) * shares[0])
    y = round((canvas[1] - inner[1]) * shares[1])
    return Layout(canvas=(canvas[0], canvas[1]), box=(x, y, x + inner[0], y + inner[1]))


def _up_to(value: float, multiple: int) -> int:
    return max(multiple, -(-round(value) // multiple) * multiple)


def extend(image: Image.Image, *, zoom: float | None, pan: str | None, max_side: int, multiple: int = 8) -> Image.Image:
    """The picture on a larger canvas with its border filled in (the classic way)."""
    plan = layout(image.size, zoom=zoom, pan=pan, max_side=max_side, multiple=multiple)
    left, top, right, bottom = plan.box
    picture = image.convert("RGB")
    if picture.size != (right - left, bottom - top):
        picture = picture.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    pixels = np.asarray(picture)
    filled = fill_border(pixels, plan)
    filled[top:bottom, left:right] = pixels  # the picture itself, untouched
    return Image.fromarray(filled)


def fill_border(pixels: np.ndarray, plan: Layout) -> np.ndarray:
    """The canvas with the picture in ``plan.box`` and its border filled (uint8 RGB)."""
    import cv2  # here, not at import: importing the classic kind stays light

    width, height = plan.canvas
    left, top, right, bottom = plan.box
    reflected = cv2.copyMakeBorder(
        pixels, top, height - bottom, left, width - right, borderType=cv2.BORDER_REFLECT_101
    ).astype(np.float32)
    known = np.zeros((height, width), np.uint8)
    known[top:bottom, left:right] = 1
    # How far each border pixel is from the picture, as a share of the widest border.
    distance = cv2.distanceTransform(1 - known, cv2.DIST_L2, 3)
    reach = max(float(distance.max()), 1.0)
    fade = np.clip(distance / reach, 0.0, 1.0)[..., None]
    # Telea on a small canvas: the picture's edge colours spread over the border, smoothly.
    factor = _SMALL / max(width, height)
    small_size = (max(2, round(width * factor)), max(2, round(height * factor)))
    small = cv2.resize(reflected, small_size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    hole = cv2.resize(1 - known, small_size, interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))  # the picture's own edge is kept in the hole's rim
    spread = cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA)
    smooth = cv2.GaussianBlur(cv2.resize(spread, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 3)
    # The mirrored texture only near the picture, blurring as it leaves it (a mirror far out reads as a
    # mirror), then the spread colours: a soft blend over the first half of the border.
    soft = cv2.GaussianBlur(reflected, (0, 0), max(2.0, 0.02 * max(width, height)))
    texture = reflected * (1 - fade) + soft * fade
    keep = np.clip(1 - fade / 0.5, 0.0, 1.0) ** 1.5
    out = texture * keep + smooth.astype(np.float32) * (1 - keep)
    filled: np.ndarray = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return filled


# --- the diffusion path ----------------------------------------------------------------------------


def feathered_mask(plan: Layout, feather: int = 8) -> Image.Image:
    """White over the new border, black over the picture, softened across the seam (``feather`` px)."""
    import cv2

    width, height = plan.canvas
    left, top, right, bottom = plan.box
    mask = np.full((height, width), 255, np.uint8)
    mask[top:bottom, left:right] = 0
    soft: np.ndarray = cv2.GaussianBlur(mask, (0, 0), feather / 2) if feather > 0 else mask
    return Image.fromarray(soft, "L")


def redraw(pipe: Any, work: Work, progress: Progress, *, steps: int, guidance: float) -> list[Image.Image]:
    """Outpaint with a diffusers pipeline: the classic fill redrawn by its inpainting twin, the picture kept.

    ``AutoPipelineForInpainting.from_pipe`` shares the loaded components (no weights are copied); a
    model that is not an inpainting one (4 input channels) inpaints by blending latents under the mask.
    """
    import torch
    from diffusers import AutoPipelineForInpainting

    request = work.request
    max_side = request.size or MAX_SIDE
    plan = layout(work.image.size, zoom=request.zoom, pan=request.pan, max_side=max_side, multiple=work.entry.multiple)
    canvas = extend(work.image, zoom=request.zoom, pan=request.pan, max_side=max_side, multiple=work.entry.multiple)
    mask = feathered_mask(plan)
    inpaint = AutoPipelineForInpainting.from_pipe(pipe)
    inpaint.set_progress_bar_config(disable=True)
    device = str(getattr(pipe, "device", "cpu"))
    generators = [
        torch.Generator(device=device if device.startswith("cuda") else "cpu").manual_seed(int(seed))
        for seed in work.seeds
    ]
    count = len(work.seeds)
    expected = max(1, int(steps * STRENGTH))

    def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        total = getattr(pipe, "num_timesteps", None) or expected
        progress(min(i + 1, total), total)
        return kwargs

    with torch.inference_mode():
        images = inpaint(
            **prompts.call_kwargs(inpaint, [request.prompt] * count, [request.negative_prompt] * count),
            image=canvas,
            mask_image=mask,
            width=plan.canvas[0],
            height=plan.canvas[1],
            strength=STRENGTH,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
        ).images
    left, top, right, bottom = plan.box
    picture = canvas.crop(plan.box)
    outputs = []
    for image in images:
        out = Image.composite(image.convert("RGB").resize(canvas.size), canvas, mask)
        out.paste(picture, (left, top))  # the picture itself, untouched
        outputs.append(out)
    return outputs
