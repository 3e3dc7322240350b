"""MediaPipe BlazeFace (full range) on LiteRT: a CNN face detector, no torch.

``remixbot weights install faces`` puts ``face_detection_full_range.tflite`` in the data dir's
weights folder; ``faces.find_faces`` uses it instead of the Haar cascade whenever an entry's
``blazeface`` option names it and ai-edge-litert is installed (the ``models`` extra).

The picture is letterboxed into a square and read at 192×192 in [-1, 1]. The network scores 2304
anchors (a 48×48 grid, one fixed-size anchor per cell) and regresses a box for each. A large picture
is also read in overlapping squares of half its longest side (``windows``), so that small faces in a
crowd are big enough for the network. Boxes scoring over ``MIN_SCORE`` from every pass are merged by
MediaPipe's weighted non-maximum suppression (overlapping boxes are averaged by score, not dropped).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIDE = 192
GRID = 48
MIN_SCORE = 0.6
MIN_OVERLAP = 0.3  # IoU above which two detections are one face

Rect = tuple[float, float, float, float]  # x, y, width, height in the image's pixels


def usable(path: str) -> bool:
    """True when ``path`` is a file and the LiteRT runtime is installed."""
    return bool(path) and Path(path).expanduser().is_file() and importlib.util.find_spec("ai_edge_litert") is not None


@functools.lru_cache(maxsize=4)
def _interpreter(path: str) -> tuple[Any, threading.Lock]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=2)
    interpreter.allocate_tensors()
    return interpreter, threading.Lock()  # an interpreter runs one picture at a time


def _anchors() -> np.ndarray:
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    return np.stack([(xs.ravel() + 0.5) / GRID, (ys.ravel() + 0.5) / GRID], axis=1).astype(np.float32)


def _scan(image: Image.Image, path: str) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the network over ``image``: (corners x0, y0, x1, y1 in its pixels, scores) over MIN_SCORE."""
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, (0, 0))
    pixels = np.asarray(square.resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32) / 127.5 - 1.0
    interpreter, lock = _interpreter(str(Path(path).expanduser()))
    with lock:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None])
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    boxes, scores = sorted(outputs, key=lambda array: -array.shape[-1])  # (1, 2304, 16), (1, 2304, 1)
    score = 1.0 / (1.0 + np.exp(-np.clip(scores[0, :, 0], -100.0, 100.0)))
    centre = boxes[0, :, :2] / SIDE + _anchors()
    size = boxes[0, :, 2:4] / SIDE
    corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * side
    keep = score > MIN_SCORE
    return corners[keep], score[keep]


def windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The whole picture, and, when it is large, overlapping squares of half its longest side: the
    network sees a picture at 192 px, so small faces in a big one are found in the squares."""
    found = [(0, 0, width, height)]
    tile = max(width, height) // 2
    if tile < 2 * SIDE:
        return found
    for y in _starts(height, tile):
        for x in _starts(width, tile):
            found.append((x, y, min(width, x + tile), min(height, y + tile)))
    return found


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    count = -(-(length - tile) // (tile * 3 // 4)) + 1  # a quarter of a tile shared with the next
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def detect(image: Image.Image, path: str) -> list[tuple[Rect, float]]:
    """The faces in ``image`` as ((x, y, width, height), score), best first."""
    rgb = image.convert("RGB")
    corners, scores = [], []
    for x0, y0, x1, y1 in windows(*rgb.size):
        found, score = _scan(rgb.crop((x0, y0, x1, y1)), path)
        corners.append(found + np.array([x0, y0, x0, y0], np.float32))
        scores.append(score)
    merged = _weighted_nms(np.concatenate(corners), np.concatenate(scores))
    return [((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), s) for (x0, y0, x1, y1), s in merged]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), np.float64)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    found = []
    while len(boxes):
        overlap = _iou(boxes[0], boxes) > MIN_OVERLAP
        weights = scores[overlap]
        found.append(((boxes[overlap] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return found
