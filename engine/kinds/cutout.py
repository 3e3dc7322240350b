"""The ``cutout`` model kind: the subject of a picture on a transparent background (✂️ Cut out).

``source`` is the folder ``remixbot weights install cutout`` fills (``weights:cutout``): U²-Net-p
(``u2netp.onnx``), a salient-object network that gives a soft mask at 320×320. The mask is
stretched to [0, 1], resized to the source's size and becomes the alpha channel of an RGBA PNG of
the whole source at its full resolution: nothing of the subject is redrawn.

A new background instead of transparency: ``--background`` (``Request.background``) or, when the
model is asked for by name (``--model cutout``), a colour word in the prompt. A colour (a word of
``COLOURS``, any CSS colour name or a hex code like ``#223344``) fills it flat; "blur" puts the subject
on a blurred copy of its own picture (a portrait look); any other text is a prompt for the background:
the subject is taken out of its picture by OpenCV inpainting (Telea, on a small canvas) and what is
left is given the prompt's classic look (``classic.restyle``), or, when the entry names a diffusers
model as ``background_model`` and it can run here, redrawn from the prompt by its inpainting twin.
The ✂️ Cut out button reads only ``--background``: the prompt of the picture it cuts out describes
that picture, not a new background. Onnxruntime only, no torch (but for a background model): runs
on any CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageFilter

from bot.jobs import Action, Progress
from bot.models import ModelEntry
from engine.kinds import onnx
from engine.work import Kind, UserFacingError, Work

PACK = "cutout"
FILE = "u2netp.onnx"
SIDE = 320  # the network's input
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
COLOURS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "red": (200, 30, 40),
    "green": (40, 150, 70),
    "blue": (40, 90, 200),
    "yellow": (245, 205, 40),
    "pink": (240, 150, 180),
    "purple": (120, 60, 160),
    "orange": (240, 140, 40),
}
BLUR = ("blur", "blurred", "bokeh")


_HEX = re.compile(r"#?(?:[0-9a-f]{3}|[0-9a-f]{6})")
_SMALL = 128  # the subject is inpainted away on a canvas this small (longest side), then scaled up


def background_of(prompt: str) -> str:
    """What the prompt asks to put behind the subject: a colour name, "blur", or "" (transparent)."""
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word in COLOURS or word in BLUR:
            return "blur" if word in BLUR else word
    return ""


def wanted_background(work: Work) -> str:
    """The background a job asks for: its ``--background``, else (a remix on this model) a colour word in
    its prompt; "" for a transparent one."""
    if work.request.background:
        return work.request.background.strip()
    return "" if work.action is Action.cutout else background_of(work.request.prompt)


def colour_of(text: str) -> tuple[int, int, int] | None:
    """The RGB colour ``text`` names (one of ``COLOURS``, a CSS colour name, ``#rgb``/``#rrggbb``), or None."""
    word = text.strip().lower()
    if word in COLOURS:
        return COLOURS[word]
    if _HEX.fullmatch(word):
        word = word if word.startswith("#") else "#" + word
    elif not word.isalpha():
        return None
    try:
        red, green, blue = ImageColor.getrgb(word)[:3]
    except ValueError:
        return None
    return red, green, blue


def without_subject(source: Image.Image, alpha: np.ndarray) -> Image.Image:
    """The picture with its subject taken out: the subject's area inpainted (Telea) from what surrounds it."""
    import cv2

    pixels = np.asarray(source.convert("RGB"))
    height, width = alpha.shape
    factor = _SMALL / max(width, height)
    small_size = (max(2, round(width * factor)), max(2, round(height * factor)))
    small = cv2.resize(pixels, small_size, interpolation=cv2.INTER_AREA)
    hole = cv2.resize((alpha > 0.25).astype(np.uint8), small_size, interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, np.ones((5, 5), np.uint8))  # the subject's rim too: no halo of it is left
    filled = cv2.inpaint(small, hole, 7, cv2.INPAINT_TELEA)
    big = cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC)
    soft = cv2.GaussianBlur(big, (0, 0), max(1.0, max(width, height) / 200))
    outside = 1 - cv2.resize(hole, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    keep = cv2.GaussianBlur(outside, (0, 0), max(1.0, max(width, height) / 150))[..., None]
    mixed = pixels.astype(np.float32) * keep + soft.astype(np.float32) * (1 - keep)
    return Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8), "RGB")


@dataclass
class CutoutModel:
    session: Any
    label: str = "U²-Net-p cut-out (onnxruntime)"

    def mask(self, image: Image.Image) -> np.ndarray:
        """float32 (H, W) in [0, 1]: how much each pixel belongs to the subject."""
        small = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32)
        small = (small / max(float(small.max()), 1e-6) - MEAN) / STD
        batch = np.ascontiguousarray(small.transpose(2, 0, 1)[None])
        out = self.session.run(None, {self.session.get_inputs()[0].name: batch})[0][0, 0]
        low, high = float(out.min()), float(out.max())
        out = (out - low) / max(high - low, 1e-6)
        resized = Image.fromarray(out.astype(np.float32), "F").resize(image.size, Image.Resampling.BILINEAR)
        return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        source = work.image.convert("RGB")
        alpha = self.mask(source)
        progress(1, 2)
        wanted = wanted_background(work)
        if not wanted:
            out = source.copy()
            out.putalpha(Image.fromarray(np.rint(alpha * 255).astype(np.uint8), "L"))
            work.notes.append("cut out (transparent background)")
            progress(2, 2)
            return [out] + [out.copy() for _ in work.seeds[1:]]
        outputs = []
        for seed in work.seeds:
            backdrop, note = self.backdrop(work, source, alpha, wanted, seed)
            front, back = np.asarray(source, np.float32), np.asarray(backdrop, np.float32)
            mixed = back + (front - back) * alpha[..., None]
            outputs.append(Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8), "RGB"))
        work.notes.append(note)
        progress(2, 2)
        return outputs

    def backdrop(
        self, work: Work, source: Image.Image, alpha: np.ndarray, wanted: str, seed: int
    ) -> tuple[Image.Image, str]:
        """The new background for ``wanted`` (a colour, "blur" or a prompt) and the note that says what it is."""
        if wanted.lower() in BLUR:
            return source.filter(ImageFilter.GaussianBlur(max(source.size) / 60)), "cut out, background blurred"
        colour = colour_of(wanted)
        if colour is not None:
            return Image.new("RGB", source.size, colour), f"cut out, on a {wanted.lower()} background"
        from engine.kinds import classic

        scene = without_subject(source, alpha)
        drawn = self.draw(work, scene, alpha, wanted, seed)
        if drawn is not None:
            return drawn
        restyled = classic.restyle(scene, wanted, seed)
        return restyled, f"cut out, background: its own scene without the subject, restyled as {wanted!r} (classic)"

    def draw(
        self, work: Work, scene: Image.Image, alpha: np.ndarray, prompt: str, seed: int
    ) -> tuple[Image.Image, str] | None:
        """The background drawn from ``prompt`` by the entry's ``background_model`` (a diffusers model) when
        it can run here: its inpainting twin redraws everything but the subject. None: no such model here."""
        name = str(work.entry.options.get("background_model") or "")
        if not name or work.load_model is None:
            return None
        try:
            entry, model = work.load_model(name)
        except UserFacingError as error:
            work.notes.append(f"{name} can't draw backgrounds here ({error})")
            return None
        pipe = getattr(model, "pipe", None)
        if pipe is None:
            work.notes.append(f"{name} is not a diffusion model, so the background is the classic fill")
            return None
        mask = Image.fromarray(np.rint((1 - alpha) * 255).astype(np.uint8), "L")
        drawn = inpaint_background(pipe, scene, mask, prompt, seed, entry)
        return drawn, f"cut out, background drawn by {name}: {prompt!r}"


def inpaint_background(
    pipe: Any, scene: Image.Image, mask: Image.Image, prompt: str, seed: int, entry: ModelEntry
) -> Image.Image:
    """``scene`` with the white of ``mask`` redrawn from ``prompt`` by ``pipe``'s inpainting twin
    (``AutoPipelineForInpainting.from_pipe`` shares the loaded weights), at the model's working size,
    then back at the scene's size (the subject is composited over it at full resolution)."""
    import torch
    from diffusers import AutoPipelineForInpainting

    from bot import images
    from engine.kinds import prompts

    small = images.fit(scene, min(max(scene.size), entry.size), entry.multiple)
    inpaint = AutoPipelineForInpainting.from_pipe(pipe)
    inpaint.set_progress_bar_config(disable=True)
    device = str(getattr(pipe, "device", "cpu"))
    generator = torch.Generator(device=device if device.startswith("cuda") else "cpu").manual_seed(int(seed))
    with torch.inference_mode():
        (drawn,) = inpaint(
            **prompts.call_kwargs(inpaint, [prompt], [""]),
            image=small,
            mask_image=mask.resize(small.size, Image.Resampling.BILINEAR),
            width=small.width,
            height=small.height,
            strength=1.0,
            num_inference_steps=entry.num_inference_steps,
            guidance_scale=entry.guidance_scale,
            generator=[generator],
            output_type="pil",
        ).images
    result: Image.Image = drawn.convert("RGB").resize(scene.size, Image.Resampling.LANCZOS)
    return result


def check(entry: ModelEntry) -> str | None:
    return onnx.files_problem(entry, (FILE,), PACK)


def load(entry: ModelEntry, device: str) -> CutoutModel:
    return CutoutModel(session=onnx.session(Path(entry.source.strip()).expanduser() / FILE))


KIND = Kind(check=check, load=load, device="cpu")  # onnxruntime on the CPU: no torch
