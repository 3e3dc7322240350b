"""The ``nudenet`` safety kind: NudeNet's 320n detector (a YOLOv8-style ONNX model) on onnxruntime, CPU.

The weights ship inside the ``nudenet`` wheel (``nudenet/320n.onnx``, 12 MB): ``pip install
'remixbot[nsfw]'``. Licence: the wheel's metadata says MIT but the LICENSE file inside it is
AGPL-3.0, so it stays an opt-in extra (README, "For server admins"). Only the ONNX file is used;
the runner below is ours, written to give the same detections as nudenet's ``NudeDetector.detect``:

- pre-processing: pad the picture right and bottom to a square with black, resize it to 320 × 320
  (bilinear), scale to 0..1, NCHW. nudenet reads files with OpenCV (BGR), swaps to RGB with
  ``cvtColor`` and swaps back with ``blobFromImage(swapRB=True)``: the model sees **BGR**, and so
  does it here;
- decoding: output ``(1, 4 + 18, anchors)``; per anchor the best class, kept from 0.2; boxes from
  centre/size to corner/size in the picture's pixels;
- non-maximum suppression: OpenCV's ``NMSBoxes`` (score 0.25, IoU 0.45), as nudenet does.

A picture is flagged when a detection of an exposed-body label (``labels``) scores at least
``threshold``. Options in models.toml (``[safety.nudenet]``): ``threshold = 0.5``, ``labels = [...]``,
``source`` (another 320n-style ONNX file; default: the one in the wheel).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bot.jobs import Verdict
from bot.models import ModelEntry
from engine.work import Kind

DEVICE = "cpu"  # onnxruntime on the CPU: no torch, so the bot process may run it too
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
UNSAFE = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
SIZE = 320  # the model's input side
KEEP = 0.2  # an anchor's best class score to be a candidate
NMS_SCORE = 0.25
NMS_IOU = 0.45
THRESHOLD = 0.5


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]  # x, y, width, height in the picture's pixels


def weights_path(entry: ModelEntry) -> Path | None:
    """The ONNX file: the entry's ``source``, else the one inside the nudenet wheel (None: not installed)."""
    if entry.source:
        return Path(entry.source)
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"


def check(entry: ModelEntry) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "needs the nsfw extra: pip install 'remixbot[nsfw]' (onnxruntime missing)"
    path = weights_path(entry)
    if path is None:
        return "needs the nsfw extra: pip install 'remixbot[nsfw]' (nudenet missing)"
    if not path.is_file():
        return f"needs weights: {path.name} not found"
    return None


class NudeNet:
    """The detector: ``detect`` one picture, ``classify`` several into verdicts. Thread-safe."""

    label = "nudenet 320n"

    def __init__(self, path: Path, threshold: float = THRESHOLD, unsafe: Sequence[str] = UNSAFE):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one picture is ~30 ms; a second thread only crowds the machine
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.threshold = threshold
        self.unsafe = frozenset(unsafe)
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[Detection]:
        blob, side = _blob(image)
        with self._lock:
            (output,) = self._session.run(None, {self._input: blob})
        return _decode(output[0], side, image.width, image.height)

    def verdict(self, detections: Sequence[Detection]) -> Verdict:
        unsafe = [d for d in detections if d.label in self.unsafe]
        top = max(unsafe, key=lambda d: d.score, default=None)
        if top is None:
            return Verdict(flagged=False, score=0.0, label="")
        return Verdict(flagged=top.score >= self.threshold, score=round(top.score, 4), label=top.label)

    def classify(self, pictures: Sequence[Image.Image]) -> list[Verdict]:
        return [self.verdict(self.detect(picture)) for picture in pictures]


def load(entry: ModelEntry, device: str) -> NudeNet:
    path = weights_path(entry)
    if path is None:
        raise FileNotFoundError("nudenet is not installed")
    threshold = float(entry.options.get("threshold", THRESHOLD))
    unsafe = tuple(entry.options.get("labels", UNSAFE))
    return NudeNet(path, threshold, unsafe)


def _blob(image: Image.Image) -> tuple[np.ndarray, int]:
    """(1, 3, 320, 320) float32 BGR in 0..1 of the picture padded to a square; the square's side."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    side = max(rgb.shape[0], rgb.shape[1])
    square = np.zeros((side, side, 3), np.uint8)
    square[: rgb.shape[0], : rgb.shape[1]] = rgb
    resized = cv2.resize(square, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    bgr = resized[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None]), side


def _decode(output: np.ndarray, side: int, width: int, height: int) -> list[Detection]:
    """Detections from the model's ``(4 + classes, anchors)`` output, after NMS."""
    import cv2

    rows = output.T  # anchors × (cx, cy, w, h, class scores…)
    scores = rows[:, 4:]
    best = scores.max(axis=1)
    keep = best >= KEEP
    rows, best, classes = rows[keep], best[keep], scores[keep].argmax(axis=1)
    scale = side / SIZE
    boxes = []
    for cx, cy, w, h in rows[:, :4].tolist():
        x = max(0.0, min((cx - w / 2) * scale, width))
        y = max(0.0, min((cy - h / 2) * scale, height))
        boxes.append([x, y, min(w * scale, width - x), min(h * scale, height - y)])
    indices = cv2.dnn.NMSBoxes(boxes, best.tolist(), NMS_SCORE, NMS_IOU)
    found = []
    for i in np.asarray(indices, dtype=int).reshape(-1):
        x, y, w, h = boxes[i]
        found.append(Detection(LABELS[int(classes[i])], float(best[i]), (int(x), int(y), int(w), int(h))))
    return found


# A scorer, not a Model: engine.safety calls its ``classify`` (the Kind's load is typed for models).
KIND = Kind(check=check, load=load, device="cpu")  # type: ignore[arg-type]
