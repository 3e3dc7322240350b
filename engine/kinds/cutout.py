"""The ``cutout`` model kind: the subject of a picture on a transparent background (✂️ Cut out).

``source`` is the folder ``remixbot weights install cutout`` fills (``weights:cutout``): U²-Net-p
(``u2netp.onnx``), a salient-object network that gives a soft mask at 320×320. The mask is
stretched to [0, 1], resized to the source's size and becomes the alpha channel of an RGBA PNG of
the whole source at its full resolution: nothing of the subject is redrawn.

A new background instead of transparency, from the prompt: a colour word ("white", "black", "grey",
"red", … ``COLOURS``) fills it with that colour; "blur" or "blurred" puts the subject on a blurred
copy of its own picture (a portrait look). Onnxruntime only, no torch: runs on any CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.kinds import onnx
from engine.work import Kind, Work

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


def background_of(prompt: str) -> str:
    """What the prompt asks to put behind the subject: a colour name, "blur", or "" (transparent)."""
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word in COLOURS or word in BLUR:
            return "blur" if word in BLUR else word
    return ""


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
        wanted = background_of(work.request.prompt)
        if not wanted:
            out = source.copy()
            out.putalpha(Image.fromarray(np.rint(alpha * 255).astype(np.uint8), "L"))
            work.notes.append("cut out (transparent background)")
        else:
            if wanted == "blur":
                backdrop = source.filter(ImageFilter.GaussianBlur(max(source.size) / 60))
            else:
                backdrop = Image.new("RGB", source.size, COLOURS[wanted])
            front, back = np.asarray(source, np.float32), np.asarray(backdrop, np.float32)
            mixed = back + (front - back) * alpha[..., None]
            out = Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8), "RGB")
            note = "cut out, background blurred" if wanted == "blur" else f"cut out, on a {wanted} background"
            work.notes.append(note)
        progress(2, 2)
        return [out] + [out.copy() for _ in work.seeds[1:]]


def check(entry: ModelEntry) -> str | None:
    return onnx.files_problem(entry, (FILE,), PACK)


def load(entry: ModelEntry, device: str) -> CutoutModel:
    return CutoutModel(session=onnx.session(Path(entry.source.strip()).expanduser() / FILE))


KIND = Kind(check=check, load=load, device="cpu")  # onnxruntime on the CPU: no torch
