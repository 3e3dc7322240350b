"""The ``classic`` model kind: real image operations picked from the prompt. No weights, no torch.

The embedded default: it runs on any CPU with numpy, Pillow and OpenCV (imported where it is used),
in well under a second per image, and never downloads anything. Keywords in the prompt pick the
effects (``KEYWORDS``, ``SYNONYMS``; docs/models.md lists them for operators and users), combined in
the order they appear; each effect is a function of float32 RGB with a seeded ``_Context``.

``strength`` blends the result with the source (0: the source exactly). The seed drives small
variations; the same seed gives the same pixels: only ``numpy.random.default_rng(seed)`` is used,
and the OpenCV calls used here give the same bytes whatever the thread count.

Each action has its own function in ``_ACTIONS``: remix (reroll, vary), a Lanczos upscale, Fix face
(``engine.kinds.faces`` finds the faces and ``faces.retouch_face`` retouches them), and a Ken Burns
animation; reference images lend the source their tones by histogram matching in Lab. A run's notes
go to ``work.notes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from bot.jobs import Action, Progress
from bot.models import ModelEntry
from engine import clips
from engine.kinds import faces, outpaint, upscale
from engine.work import Clip, Kind, Work

LABEL = "classic"
REFERENCE_SIDE = 768  # filter sizes are tuned for this longest side and scale with the image


@dataclass
class _Context:
    """What every effect gets besides the image: the seeded randomness and a few switches."""

    rng: np.random.Generator
    scale: float  # longest side / REFERENCE_SIDE: multiply pixel radii by this
    grain: bool = True  # "--no grain" turns the film grain and paper noise down to nothing

    def jitter(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def px(self, size: float) -> float:
        return max(0.5, size * self.scale)


# An effect takes float32 RGB in [0, 1] (H, W, 3) and returns the same.
Effect = Callable[[np.ndarray, _Context], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Helpers


def _luma(img: np.ndarray) -> np.ndarray:
    return (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def _gray3(lum: np.ndarray) -> np.ndarray:
    return np.repeat(lum[..., None], 3, axis=2)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _to_f32(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    smooth: np.ndarray = x * x * (3.0 - 2.0 * x)
    return smooth


def _s_curve(img: np.ndarray, amount: float, pivot: float = 0.5) -> np.ndarray:
    """Contrast around ``pivot``: a logistic curve renormalised so 0 and 1 stay put."""
    if amount <= 0:
        return img
    gain = 1.0 + 9.0 * amount

    def curve(x: np.ndarray | float) -> Any:  # an array for an array, a numpy float for a float
        return 1.0 / (1.0 + np.exp(-gain * (x - pivot)))

    low, high = curve(0.0), curve(1.0)
    curved: np.ndarray = ((curve(img) - low) / (high - low)).astype(np.float32)
    return curved


def _vibrance(img: np.ndarray, amount: float) -> np.ndarray:
    """Push colours away from grey, less so for colours that are already saturated."""
    lum = _luma(img)[..., None]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    sat = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    factor = (1.0 + amount * (1.0 - sat))[..., None]
    vibrant: np.ndarray = lum + (img - lum) * factor
    return vibrant


def _vignette(img: np.ndarray, amount: float) -> np.ndarray:
    h, w = img.shape[:2]
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    r2 = (x * x + y * y) / 2.0  # 0 at the centre, 1 in the corners
    return img * (1.0 - amount * _smoothstep(r2 * 1.3 - 0.15))[..., None]


def _noise(ctx: _Context, shape: tuple[int, int], sigma: float = 0.0) -> np.ndarray:
    """Seeded noise with unit standard deviation, blurred by ``sigma`` pixels for larger grain."""
    import cv2

    noise: np.ndarray = ctx.rng.standard_normal(shape, dtype=np.float32)
    if sigma > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
        noise = noise / max(float(noise.std()), 1e-6)
    return noise


def _fractal_noise(ctx: _Context, shape: tuple[int, int], octaves: int = 4, base: int = 6) -> np.ndarray:
    """Smooth multi-scale noise (paper, washes) with unit standard deviation."""
    import cv2

    h, w = shape
    total = np.zeros(shape, np.float32)
    for octave in range(octaves):
        cells = base * 2**octave
        small = ctx.rng.standard_normal((max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))))
        total += cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) / 2**octave
    return total / max(float(total.std()), 1e-6)


def _grain(img: np.ndarray, ctx: _Context, amount: float) -> np.ndarray:
    """Film grain, the same on all channels so grey stays grey."""
    if not ctx.grain or amount <= 0:
        return img
    h, w = img.shape[:2]
    noise = _noise(ctx, (h, w), sigma=0.6 * ctx.scale)
    # grain is strongest in the midtones, as on film
    lum = _luma(img)
    weight = amount * (0.35 + 2.6 * lum * (1.0 - lum))
    return img + (noise * weight)[..., None]


def _directional_blur(noise: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Smear ``noise`` along a line: pencil strokes and brush streaks."""
    import cv2

    size = max(3, round(length) | 1)
    kernel: np.ndarray = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (size, size))
    kernel = kernel / kernel.sum()
    out = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return out / max(float(out.std()), 1e-6)


def _guided_smooth(img: np.ndarray, radius: float, eps: float) -> np.ndarray:
    """Self-guided filter (He et al.): smooths where the local variance is below ``eps`` and keeps
    edges where it is above. A handful of box filters, so fast at any radius."""
    import cv2

    size = (2 * max(1, round(radius)) + 1,) * 2

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean = box(img)
    variance = np.maximum(box(img * img) - mean * mean, 0.0)
    a = variance / (variance + eps)
    b = mean - a * mean
    smooth: np.ndarray = box(a) * img + box(b)
    return smooth


def _pencil_lines(img: np.ndarray, ctx: _Context, sigma: float) -> np.ndarray:
    """Grey-level pencil lines in [0, 1] (1: paper): the grey image colour-dodged by its blurred
    negative, so only edges stay dark."""
    import cv2

    gray = _luma(img)
    inverted_blur = cv2.GaussianBlur(1.0 - gray, (0, 0), ctx.px(sigma))
    lines: np.ndarray = np.clip(gray / np.maximum(1.0 - inverted_blur, 1e-3), 0.0, 1.0)
    return lines


def _kuwahara(img: np.ndarray, radius: float) -> np.ndarray:
    """Generalised Kuwahara: each pixel takes the mean colour of eight Gaussian windows around it,
    weighted towards the most uniform (lowest variance) ones. Flat strokes, kept edges."""
    import cv2

    h, w = img.shape[:2]
    lum = _luma(img)
    pad = int(np.ceil(radius)) + 1
    # one blur per plane (r, g, b, luma, luma²); the eight windows are shifted views of it
    planes = [
        cv2.GaussianBlur(
            cv2.copyMakeBorder(np.ascontiguousarray(plane), pad, pad, pad, pad, cv2.BORDER_REFLECT),
            (0, 0),
            radius / 2.0,
        )
        for plane in (img[..., 0], img[..., 1], img[..., 2], lum, lum * lum)
    ]
    total = np.zeros((3, h, w), np.float32)
    weights = np.zeros((h, w), np.float32)
    for angle in np.arange(8) * (np.pi / 4):
        dy, dx = round(radius * 0.6 * np.sin(angle)), round(radius * 0.6 * np.cos(angle))
        r, g, b, mean, square = (plane[pad + dy : pad + dy + h, pad + dx : pad + dx + w] for plane in planes)
        weight = np.maximum(square - mean * mean, 0.0)
        weight *= 1e4
        weight += 1.0
        np.reciprocal(weight, out=weight)
        weight *= weight
        weight *= weight  # (1 / (1 + variance))^4: a higher power keeps edges crisper
        total[0] += r * weight
        total[1] += g * weight
        total[2] += b * weight
        weights += weight
    return np.ascontiguousarray((total / weights).transpose(1, 2, 0))


def _palette(img: np.ndarray, colors: int, rng: np.random.Generator) -> np.ndarray:
    """``colors`` representative colours of uint8 ``img`` (any 3-channel space): k-means++ on a
    seeded sample."""
    pixels = img.reshape(-1, 3)
    sample = pixels[rng.choice(len(pixels), size=min(len(pixels), 4096), replace=False)].astype(np.float32)
    starts = [sample[rng.integers(len(sample))]]
    for _ in range(colors - 1):  # k-means++: spread the starting colours out
        nearest = ((sample[:, None, :] - np.array(starts)[None]) ** 2).sum(axis=2).min(axis=1)
        starts.append(sample[rng.choice(len(sample), p=nearest / nearest.sum())] if nearest.sum() > 0 else sample[0])
    centres = np.array(starts)
    for _ in range(8):
        labels = ((sample[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        for k in range(colors):
            members = sample[labels == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    palette: np.ndarray = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    return palette


def _nearest_colors(img: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """For each pixel of uint8 ``img``, the index of the nearest colour of ``palette`` (n, 3), through
    a lookup table on 5 bits per channel."""
    levels = np.arange(32, dtype=np.float32) * 8 + 4
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    colors = palette.astype(np.float32)
    table = ((grid[:, None, :] - colors[None]) ** 2).sum(axis=2).argmin(axis=1)
    bins = img.astype(np.int32) >> 3
    index = bins[..., 0] << 10 | bins[..., 1] << 5 | bins[..., 2]
    nearest: np.ndarray = table[index]
    return nearest


# ---------------------------------------------------------------------------------------------
# Colour grades


def warm(img: np.ndarray, ctx: _Context) -> np.ndarray:
    k = ctx.jitter(0.75, 1.3)
    gains = np.array([1.0 + 0.09 * k, 1.0 + 0.025 * k, 1.0 - 0.11 * k], np.float32)
    out = img * gains
    # a soft golden glow in the highlights
    lum = _luma(img)[..., None]
    glow = _smoothstep((lum - 0.55) / 0.45) * 0.05 * k
    return out + glow * np.array([1.0, 0.6, -0.2], np.float32)


def cool(img: np.ndarray, ctx: _Context) -> np.ndarray:
    k = ctx.jitter(0.75, 1.3)
    tint = ctx.jitter(-0.015, 0.015)  # cyan-ish or violet-ish
    gains = np.array([1.0 - 0.09 * k, 1.0 + 0.01 * k + tint, 1.0 + 0.1 * k], np.float32)
    out = img * gains
    lum = _luma(img)[..., None]
    shadows = (1.0 - lum) ** 2 * 0.03 * k
    return out + shadows * np.array([-0.5, 0.2, 1.0], np.float32)


def cinematic(img: np.ndarray, ctx: _Context) -> np.ndarray:
    """Teal and orange: shadows and cool colours towards teal, highlights and skin towards orange."""
    k = ctx.jitter(0.8, 1.25)
    lum = _luma(img)[..., None]
    warmth = np.clip((img[..., :1] - img[..., 2:]) * 4.0, -1.0, 1.0)  # > 0: reds, oranges, skin
    shadows = (1.0 - _smoothstep(lum / 0.55)) * (1.0 - 0.5 * np.maximum(warmth, 0.0))
    highlights = _smoothstep((lum - 0.3) / 0.7) * (0.5 + 0.5 * np.maximum(warmth, 0.0))
    cool_colours = np.maximum(-warmth, 0.0) * (1.0 - shadows) * 0.8
    teal = np.array([-0.13, 0.02, 0.085], np.float32)
    orange = np.array([0.07, 0.015, -0.08], np.float32)
    out = img + k * ((shadows + cool_colours) * teal + highlights * orange)
    out = _vibrance(out, -0.1)  # slightly muted colour, as in graded film
    out = _s_curve(np.clip(out, 0, 1), 0.15 * k)
    out = 0.025 + out * 0.95  # lifted blacks, rolled-off whites
    out = _vignette(out, ctx.jitter(0.15, 0.3))
    return _grain(out, ctx, 0.012)


def noir(img: np.ndarray, ctx: _Context) -> np.ndarray:
    # a black-and-white mix as through a coloured filter: the seed picks the filter
    mix = np.array([0.3, 0.59, 0.11], np.float32) + ctx.rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    mix = np.clip(mix, 0.02, None)
    lum = img @ (mix / mix.sum())
    low, high = np.percentile(lum, [1.0, 99.0])
    lum = np.clip((lum - low) / max(high - low, 1e-3), 0.0, 1.0)  # full range
    lum = _s_curve(lum, ctx.jitter(0.35, 0.5), pivot=float(np.median(lum)))
    out = _vignette(_gray3(lum.astype(np.float32)), ctx.jitter(0.3, 0.45))
    return _grain(out, ctx, 0.025)


def vintage(img: np.ndarray, ctx: _Context) -> np.ndarray:
    k = ctx.jitter(0.8, 1.2)
    sepia = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32).T
    toned = img @ sepia
    toned /= max(float(toned.max()), 1.0)
    out = img + (toned - img) * min(1.0, 0.75 * k)
    out = _s_curve(out, 0.05)
    out = 0.07 * k + out * (0.9 - 0.04 * k)  # faded blacks, dull whites
    out = out + np.array([0.02, 0.005, -0.02], np.float32) * k
    out = _vignette(out, ctx.jitter(0.25, 0.4))
    return _grain(out, ctx, 0.02)


def vivid(img: np.ndarray, ctx: _Context) -> np.ndarray:
    out = _vibrance(img, ctx.jitter(0.35, 0.6))
    return _s_curve(np.clip(out, 0, 1), ctx.jitter(0.05, 0.1))


# ---------------------------------------------------------------------------------------------
# Stylisations


def sketch(img: np.ndarray, ctx: _Context) -> np.ndarray:
    """Pencil: colour-dodge the grey image with its blurred negative, then hatch the shadows."""
    import cv2

    h, w = img.shape[:2]
    gray = _luma(img)
    # lifted blacks: dark areas become hatching rather than solid graphite
    lines = _pencil_lines(0.12 + 0.88 * img, ctx, ctx.jitter(4.0, 9.0)) ** ctx.jitter(1.8, 2.6)
    # hatching: pencil strokes at the seed's angle in the mid tones, cross-hatching in the darks
    tone = cv2.GaussianBlur(gray, (0, 0), ctx.px(3.0))
    angle = ctx.jitter(30, 60)
    out = lines
    for direction, (light, dark) in ((angle, (0.7, 0.15)), (angle + 90.0, (0.3, 0.0))):
        strokes = _directional_blur(_noise(ctx, (h, w), 0.5 * ctx.scale), ctx.px(15), direction)
        hatch = np.clip(0.5 + 0.5 * strokes, 0.0, 1.0)
        out = out * (1.0 - 0.6 * _smoothstep((light - tone) / (light - dark)) * hatch)
    if ctx.grain:  # paper tooth
        out *= 1.0 - 0.035 * np.abs(_noise(ctx, (h, w), 0.7 * ctx.scale))
    out = 0.97 * out + 0.02  # graphite never quite black, paper slightly off white
    return _gray3(out.astype(np.float32))


def watercolor(img: np.ndarray, ctx: _Context) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    # soft washes: flatten colour regions and keep their boundaries
    wash = _kuwahara(_guided_smooth(img, ctx.px(8), ctx.jitter(0.01, 0.02)), ctx.px(5.0))
    # hand-painted wobble: displace by smooth seeded noise, so washes miss the lines a little
    amp = ctx.px(ctx.jitter(1.0, 2.0))
    dx = _fractal_noise(ctx, (h, w), octaves=2, base=10) * amp
    dy = _fractal_noise(ctx, (h, w), octaves=2, base=10) * amp
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    wash = cv2.remap(wash, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # transparent pigment: lighter, more colourful
    out = 1.0 - (1.0 - _vibrance(wash, 0.35)) * ctx.jitter(0.86, 0.93)
    # pigment pools at the rim of each wash
    lum = _luma(out)
    rim = np.maximum(cv2.GaussianBlur(lum, (0, 0), ctx.px(3.0)) - lum, 0.0)
    out = out * (1.0 - 3.0 * rim)[..., None]
    # uneven pigment: large soft blooms, and granulation in the paper's tooth, strongest in mid tones
    pigment = 1.0 - out
    variation = _fractal_noise(ctx, (h, w), octaves=3, base=4) * 0.1
    if ctx.grain:
        mid = 4.0 * _luma(pigment) * _luma(out)
        variation += _noise(ctx, (h, w), 1.1 * ctx.scale) * 0.07 * mid
    out = 1.0 - pigment * np.clip(1.0 + variation, 0.5, 1.5)[..., None]
    out = cv2.GaussianBlur(out, (0, 0), ctx.px(0.7))  # soft, bled edges
    # a light pencil underdrawing
    lines = _pencil_lines(img, ctx, 2.5) ** 2.5
    out = out * (0.72 + 0.28 * lines)[..., None]
    painted: np.ndarray = out * np.array([1.0, 0.99, 0.965], np.float32) + 0.015  # warm paper
    return painted


_CHROMA_STRETCH = 2.5  # cartoon palettes: how much more colour differences count than lightness


def cartoon(img: np.ndarray, ctx: _Context) -> np.ndarray:
    import cv2

    smooth = _to_u8(img)
    for _ in range(2):
        smooth = cv2.bilateralFilter(smooth, 7, 40, 5 * ctx.scale)
    # flat colours: a k-means palette (its size and starting colours picked by the seed), found in
    # Lab with the colour axes stretched so small areas of distinct colour (faces) keep theirs
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1:] = 128.0 + (lab[..., 1:] - 128.0) * _CHROMA_STRETCH
    lab = np.clip(lab, 0, 255).astype(np.uint8)
    centres = _palette(lab, int(ctx.rng.integers(12, 21)), ctx.rng)
    indices = _nearest_colors(lab, centres)
    centres = centres.astype(np.float32)
    centres[:, 1:] = 128.0 + (centres[:, 1:] - 128.0) / _CHROMA_STRETCH
    palette = cv2.cvtColor(np.clip(np.rint(centres), 0, 255).astype(np.uint8)[None], cv2.COLOR_LAB2RGB)[0]
    flat = cv2.medianBlur(palette[indices], 5)
    # ink: adaptive threshold on the smoothed grey, kept near strong edges only (not wood grain)
    gray = cv2.medianBlur(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY), 5)
    block = max(3, 2 * round(ctx.px(9) / 2) + 1)
    ink = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, int(ctx.rng.integers(4, 7))
    )
    edges = cv2.Canny(gray, 50, 120)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=max(1, round(2 * ctx.scale)))
    inked = (ink > 0) & (edges > 0)
    out = _vibrance(_to_f32(flat), 0.25)
    dark = np.array([0.08, 0.06, 0.07], np.float32)
    return np.where(inked[..., None], dark, out)


def oil(img: np.ndarray, ctx: _Context) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    radius = ctx.px(ctx.jitter(4.0, 6.5))
    paint = _kuwahara(img, radius)
    paint = _kuwahara(paint, radius * 0.6)
    paint = _vibrance(paint, 0.2)
    # impasto: relief of the paint surface, with brush streaks at the seed's angle, lit from the top left
    streaks = _directional_blur(_noise(ctx, (h, w), 0.8 * ctx.scale), ctx.px(13), ctx.jitter(0, 180))
    lum = cv2.GaussianBlur(_luma(paint), (0, 0), ctx.px(1.2)) + 0.006 * streaks
    relief = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    out: np.ndarray = paint * (1.0 - np.clip(relief * 1.2, -0.08, 0.08))[..., None]
    if ctx.grain:  # canvas weave
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = max(2.5, 3.0 * ctx.scale)
        weave = np.sin(xx * np.pi / period) * np.sin(yy * np.pi / period)
        out = out * (1.0 + 0.015 * weave)[..., None]
    return out


def detail(img: np.ndarray, ctx: _Context) -> np.ndarray:
    import cv2

    # clarity: boost what an edge-preserving blur removes (no halos at strong edges) ...
    base = _guided_smooth(img, ctx.px(8), 0.01)
    out = img + (img - base) * ctx.jitter(1.0, 1.5)
    # ... then a fine unsharp mask for crisp texture
    blur = cv2.GaussianBlur(out, (0, 0), ctx.px(1.0))
    out = out + (out - blur) * ctx.jitter(0.5, 0.8)
    return _vibrance(np.clip(out, 0, 1), 0.1)


def polish(img: np.ndarray, ctx: _Context) -> np.ndarray:
    """The default when no keyword matches: a mild, tasteful enhance."""
    import cv2

    lab = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    lightness = np.clip(lab[..., 0] * 2.55, 0, 255).astype(np.uint8)
    tiles = max(2, round(8 * min(img.shape[:2]) / REFERENCE_SIDE))
    clahe = cv2.createCLAHE(clipLimit=ctx.jitter(1.4, 2.0), tileGridSize=(tiles, tiles))
    local = clahe.apply(lightness).astype(np.float32) / 2.55
    lab[..., 0] = lab[..., 0] + (local - lab[..., 0]) * 0.6
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = _vibrance(out, ctx.jitter(0.1, 0.25))
    temperature = ctx.jitter(-0.02, 0.03)
    return out * np.array([1.0 + temperature, 1.0, 1.0 - temperature], np.float32)


# ---------------------------------------------------------------------------------------------
# Keywords


@dataclass(frozen=True)
class _Style:
    effect: Effect
    words: tuple[str, ...]  # the keyword itself first, then its synonyms
    weak: tuple[str, ...] = ()  # words that count only when no other stylisation is asked for
    stylisation: bool = False


_STYLES: dict[str, _Style] = {
    "warm": _Style(warm, ("warm", "warmer", "golden", "sunset", "sunny")),
    "cool": _Style(cool, ("cool", "cold", "cooler", "colder", "icy", "winter", "frosty")),
    "cinematic": _Style(cinematic, ("cinematic", "film", "movie", "teal", "blockbuster")),
    "noir": _Style(noir, ("noir", "monochrome", "mono", "grayscale", "greyscale", "bw")),
    "vintage": _Style(vintage, ("vintage", "sepia", "retro", "antique", "nostalgic")),
    "vivid": _Style(vivid, ("vivid", "saturated", "vibrant", "colorful", "colourful", "punchy")),
    "sketch": _Style(
        sketch, ("sketch", "pencil", "charcoal", "graphite", "sketched"), weak=("drawing", "drawn"), stylisation=True
    ),
    "watercolor": _Style(
        watercolor, ("watercolor", "watercolour", "aquarelle", "watercolors", "watercolours"), stylisation=True
    ),
    "cartoon": _Style(cartoon, ("cartoon", "comic", "comics", "toon", "anime", "cartoonish"), stylisation=True),
    "oil": _Style(oil, ("oil", "impasto", "oils"), weak=("painting", "painted", "paint"), stylisation=True),
    "detail": _Style(
        detail, ("detail", "detailed", "sharp", "sharpen", "sharper", "enhance", "enhanced", "crisp", "hdr", "clarity")
    ),
}

DEFAULT_STYLE = "polish"  # what a prompt with no keyword gets

# The keywords, as the /models help lists them, and the other words that pick the same effect.
KEYWORDS: tuple[str, ...] = tuple(_STYLES)
SYNONYMS: dict[str, tuple[str, ...]] = {
    name: tuple(word for word in (*style.words, *style.weak) if word != name) for name, style in _STYLES.items()
}

_WORD_TO_STYLE = {word: name for name, style in _STYLES.items() for word in style.words}
_WEAK_TO_STYLE = {word: name for name, style in _STYLES.items() for word in style.weak}
_PHRASES = [  # several words for one keyword, rewritten before splitting into words
    (re.compile(r"\bblack\s*(?:and|&|-|/)\s*white\b|\bb\s*[&/]\s*w\b"), " bw "),
    (re.compile(r"\bteal\s*(?:and|&|-|/)\s*orange\b"), " teal "),
    (re.compile(r"\bwater\s*colou?rs?\b"), " watercolor "),
    (re.compile(r"\bcomic\s*book\b"), " comic "),
]
_NEGATIONS = {"no", "not", "without", "non", "never"}
_GRAIN_WORDS = {"grain", "grainy", "noise", "noisy"}


def _style_of(word: str) -> str | None:
    return _WORD_TO_STYLE.get(word) or _WEAK_TO_STYLE.get(word)


def _words(text: str) -> list[str]:
    text = text.lower()
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    return re.findall(r"[a-z]+", text)


def effects_for(prompt: str, negative_prompt: str = "") -> list[str]:
    """The effect names a prompt asks for, in order of appearance (``["polish"]`` for none)."""
    unwanted = {_style_of(word) for word in _words(negative_prompt)} - {None}
    words = _words(prompt)
    matches: list[tuple[str, bool]] = []  # (effect name, matched by a weak word)
    for i, word in enumerate(words):
        name = _style_of(word)
        if name is None:
            continue
        if i > 0 and words[i - 1] in _NEGATIONS:  # "no sepia", "without grain"
            unwanted.add(name)
        else:
            matches.append((name, word in _WEAK_TO_STYLE))
    # "painting" means oil only when no other word says how to paint ("watercolor painting")
    styled = any(_STYLES[name].stylisation for name, weak in matches if not weak)
    names = [name for name, weak in matches if not (weak and styled) and name not in unwanted]
    return list(dict.fromkeys(names)) or [DEFAULT_STYLE]


def _wants_grain(prompt: str, negative_prompt: str) -> bool:
    """False for "--no grain" or "no grain" in the prompt: film grain and paper noise left out."""
    words = _words(prompt)
    negated = any(word in _GRAIN_WORDS and i > 0 and words[i - 1] in _NEGATIONS for i, word in enumerate(words))
    return not negated and not _GRAIN_WORDS & set(_words(negative_prompt))


def _effect(name: str) -> Effect:
    return polish if name == DEFAULT_STYLE else _STYLES[name].effect


# ---------------------------------------------------------------------------------------------
# Actions


def _remix(work: Work, progress: Progress) -> list[Image.Image]:
    request = work.request
    source = work.image.convert("RGB")
    names = effects_for(request.prompt, request.negative_prompt)
    if work.references and names == [DEFAULT_STYLE]:
        names = []  # the references are the look: no default polish on top
    grain = _wants_grain(request.prompt, request.negative_prompt)
    if not np.isfinite(request.strength):
        raise ValueError(f"strength must be a number from 0 to 1, not {request.strength}")
    strength = float(np.clip(request.strength, 0.0, 1.0))
    stages = len(names) + 1  # each effect, then the blend with the source
    total = stages * len(work.seeds)
    step = 0
    src = _to_f32(np.asarray(source))
    start = _to_f32(_reference_tones(work, np.asarray(source))) if work.references else src
    outputs = []
    for seed in work.seeds:
        ctx = _Context(rng=np.random.default_rng(seed), scale=max(source.size) / REFERENCE_SIDE, grain=grain)
        img = start
        for name in names:
            img = np.clip(_effect(name)(img, ctx), 0.0, 1.0).astype(np.float32)
            step += 1
            progress(step, total)
        if strength <= 0.0:
            out = np.asarray(source).copy()
        else:
            out = _to_u8(img * strength + src * (1.0 - strength))  # exactly img at strength 1
        outputs.append(Image.fromarray(out, "RGB"))
        step += 1
        progress(step, total)
    return outputs


def restyle(image: Image.Image, prompt: str, seed: int, negative_prompt: str = "") -> Image.Image:
    """The picture in the look ``prompt`` asks for, at full strength (what a remix at strength 1 makes):
    for a kind that wants a classic look on a picture of its own (the cut-out's new background)."""
    source = image.convert("RGB")
    ctx = _Context(
        rng=np.random.default_rng(seed),
        scale=max(source.size) / REFERENCE_SIDE,
        grain=_wants_grain(prompt, negative_prompt),
    )
    img = _to_f32(np.asarray(source))
    for name in effects_for(prompt, negative_prompt):
        img = np.clip(_effect(name)(img, ctx), 0.0, 1.0).astype(np.float32)
    return Image.fromarray(_to_u8(img), "RGB")


def _upscale(work: Work, progress: Progress) -> list[Image.Image]:
    factor = upscale.factor_of(work.request.scale)
    source = work.image.convert("RGB")
    upscale.output_size(source.size, factor, int(work.entry.options.get("max_side", upscale.MAX_SIDE)))
    work.notes.append(f"classic ×{factor}: Lanczos resize and sharpening")
    total = 2
    big = source.resize((source.width * factor, source.height * factor), Image.Resampling.LANCZOS)
    progress(1, total)
    big = big.filter(ImageFilter.UnsharpMask(radius=1.2 * factor / 2, percent=60, threshold=2))
    progress(2, total)
    return [big.copy() for _ in work.seeds]


def _fixface(work: Work, progress: Progress) -> list[Image.Image]:
    return faces.fix(work, progress, faces.retouch_face, "classic retouch")


def _reference_tones(work: Work, rgb: np.ndarray) -> np.ndarray:
    """The uint8 RGB image in the colours and tones of ``work.references``: each Lab channel is
    histogram-matched to the references' averaged histograms (lightness half-way, to keep the
    source's own contrast), then blended with the source by ``ip_adapter_scale`` (default 1)."""
    import cv2

    scale = work.request.ip_adapter_scale
    amount = 1.0 if scale is None else float(np.clip(scale, 0.0, 1.0))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    references = []
    for reference in work.references:
        thumb = reference.convert("RGB")
        thumb.thumbnail((256, 256), Image.Resampling.BILINEAR)  # the histograms need no more pixels
        references.append(cv2.cvtColor(np.asarray(thumb), cv2.COLOR_RGB2LAB))
    matched = np.empty_like(lab)
    levels = np.arange(256, dtype=np.float64)
    for channel, weight in enumerate((0.5, 1.0, 1.0)):  # L, a, b
        values = lab[..., channel]
        own = np.cumsum(np.bincount(values.ravel(), minlength=256)) / values.size
        wanted = np.cumsum(
            sum(np.bincount(ref[..., channel].ravel(), minlength=256) / ref[..., channel].size for ref in references)
            / len(references)
        )
        table = np.interp(own, wanted, levels)  # quantile mapping: own CDF → the references' CDF
        table = levels + (table - levels) * weight
        matched[..., channel] = np.clip(np.rint(table), 0, 255).astype(np.uint8)[values]
    out = cv2.cvtColor(matched, cv2.COLOR_LAB2RGB)
    return _to_u8(_to_f32(out) * amount + _to_f32(rgb) * (1.0 - amount))


CLIP_SIDE = 768  # the longest side of an animation unless --size says otherwise
CLIP_SECONDS = 3.0
CLIP_FPS = 24
_FRAMES_PER_STEP = 8  # progress is reported every this many frames
# motion → (zoom at the end, how far toward the edge the view drifts: 0 none, 1 all the way)
_MOTIONS = {"low": (1.10, 0.45), "high": (1.28, 0.9)}


def _animate(work: Work, progress: Progress) -> list[Clip]:
    """A Ken Burns move on the still: an eased push-in drifting toward a seeded point, as an MP4."""
    request = work.request
    fps = request.fps or CLIP_FPS
    count = request.num_frames or round(CLIP_SECONDS * fps)
    zoom, drift = _MOTIONS[request.motion or "low"]
    source = work.image.convert("RGB")
    longest = min(request.size or CLIP_SIDE, max(source.size))
    factor = longest / max(source.size)
    width, height = clips.even_size(round(source.width * factor), round(source.height * factor))
    if (width, height) != source.size:
        source = source.resize((width, height), Image.Resampling.LANCZOS)
    still = np.asarray(source)
    chunks = -(-count // _FRAMES_PER_STEP)
    total, step = (chunks + 1) * len(work.seeds), 0
    outputs: list[Clip] = []
    for seed in work.seeds:
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * np.pi)
        pan = drift * np.sqrt(rng.uniform(0.3, 1.0)) * np.array([np.cos(angle), np.sin(angle)])
        end_zoom = 1.0 + (zoom - 1.0) * rng.uniform(0.85, 1.15)

        def frames(pan: np.ndarray = pan, end_zoom: float = end_zoom) -> Iterator[np.ndarray]:
            nonlocal step
            for i in range(count):
                yield _camera_frame(still, i / max(count - 1, 1), end_zoom, pan)
                if (i + 1) % _FRAMES_PER_STEP == 0 or i + 1 == count:
                    step += 1
                    progress(step, total)

        if work.entry.options.get("clip_format") == "gif":
            outputs.append(clips.encode_gif(list(frames()), fps))
        else:
            outputs.append(clips.encode_mp4(frames(), fps))
        step += 1
        progress(step, total)
    return outputs


def _camera_frame(still: np.ndarray, t: float, end_zoom: float, pan: np.ndarray) -> np.ndarray:
    """The frame at time ``t`` (0 to 1) of a push-in to ``end_zoom`` toward ``pan`` (-1 to 1 on each axis,
    as a fraction of the room the zoom leaves). At t = 0 it is the still, pixel for pixel."""
    if t <= 0.0:
        return still
    import cv2

    height, width = still.shape[:2]
    eased = t * t * (3.0 - 2.0 * t)
    zoom = 1.0 + (end_zoom - 1.0) * eased
    # the view's centre moves linearly in the eased time; the room the zoom leaves grows faster
    # (1 - 1/zoom is concave in eased), so the view never leaves the image
    room = np.array([width, height]) * (1.0 - 1.0 / end_zoom) / 2.0
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + pan * room * eased
    # output pixel p shows source point centre + (p - middle) / zoom
    matrix = np.array(
        [
            [1.0 / zoom, 0.0, centre[0] - (width - 1) / 2.0 / zoom],
            [0.0, 1.0 / zoom, centre[1] - (height - 1) / 2.0 / zoom],
        ]
    )
    return cv2.warpAffine(
        still, matrix, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )


def _outpaint(work: Work, progress: Progress) -> list[Image.Image]:
    """Zoom out or pan: the picture on a larger canvas, the border filled from its own texture and colours."""
    request = work.request
    max_side = request.size or outpaint.MAX_SIDE
    image = outpaint.extend(
        work.image, zoom=request.zoom, pan=request.pan, max_side=max_side, multiple=work.entry.multiple
    )
    progress(1, 1)
    return [image for _ in work.seeds]


_ACTIONS: dict[Action, Callable[[Work, Progress], Sequence[Image.Image | Clip]]] = {
    Action.remix: _remix,
    Action.reroll: _remix,
    Action.vary: _remix,
    Action.upscale: _upscale,
    Action.animate: _animate,
    Action.fixface: _fixface,
    Action.outpaint: _outpaint,
}


class ClassicModel:
    label = LABEL
    nbytes = 0  # nothing resident worth counting against the memory budget

    def __init__(self, entry: ModelEntry):
        self.entry = entry

    def run(self, work: Work, progress: Progress) -> Sequence[Image.Image | Clip]:
        action = _ACTIONS.get(work.action)
        if action is None:
            raise NotImplementedError(f"the classic model cannot {work.action.value} yet")
        return action(work, progress)


def check(entry: ModelEntry) -> str | None:
    """Classic needs nothing beyond the core install: it can always run."""
    return None


def load(entry: ModelEntry, device: str) -> ClassicModel:
    return ClassicModel(entry)


# no torch: the runner never picks (or imports torch to pick) a device for it
KIND = Kind(check=check, load=load, device="cpu")
