"""Face detection on the fixture photos and crops made from them: Haar against BlazeFace.

    python benchmarks/faces.py --weights data/weights/faces      # after `remixbot weights install faces`

Cases (``cases()``; the tests use the same ones): the four fixture photos (one face: astronaut.png;
none: a cat, a coffee cup, a rocket), the astronaut rotated by 20°, 45° and 90°, shrunk to 96 px and
64 px wide, and a crowd: six copies of her head at different sizes pasted on the rocket photo. A
detection is a hit when its centre falls inside a true face box (each face counted once), else a
false positive. Both detectors run through ``faces.find_faces``, as Fix face calls them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

IMAGES = ROOT / "tests" / "fixtures" / "images"
FACE = (172, 58, 288, 182)  # the astronaut's face in astronaut.png (512²), by eye

Box = tuple[float, float, float, float]


def _rotate(image: Image.Image, box: Box, degrees: float) -> tuple[Image.Image, Box]:
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    import math

    cx, cy = (box[0] + box[2]) / 2 - image.width / 2, (box[1] + box[3]) / 2 - image.height / 2
    angle = math.radians(degrees)
    x = cx * math.cos(angle) + cy * math.sin(angle) + turned.width / 2
    y = -cx * math.sin(angle) + cy * math.cos(angle) + turned.height / 2
    half = (box[2] - box[0]) / 2
    return turned, (x - half, y - half, x + half, y + half)


def cases() -> list[tuple[str, Image.Image, list[Box]]]:
    """(name, picture, true face boxes)."""
    astronaut = Image.open(IMAGES / "astronaut.png").convert("RGB")
    found: list[tuple[str, Image.Image, list[Box]]] = [("astronaut", astronaut, [FACE])]
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        found.append((name.split(".")[0], Image.open(IMAGES / name).convert("RGB"), []))
    for degrees in (20, 45, 90):
        turned, box = _rotate(astronaut, FACE, degrees)
        found.append((f"rotated {degrees}°", turned, [box]))
    for width in (96, 64):
        k = width / astronaut.width
        found.append((f"small {width} px", astronaut.resize((width, width)), [tuple(v * k for v in FACE)]))
    crowd = Image.open(IMAGES / "rocket.jpg").convert("RGB").resize((1200, 800))
    head = astronaut.crop((122, 8, 338, 232))  # her face with some hair and collar
    boxes: list[Box] = []
    for i, (side, x, y) in enumerate(
        ((216, 40, 40), (160, 330, 60), (120, 560, 80), (200, 760, 40), (96, 90, 500), (140, 420, 470))
    ):
        piece = head.resize((side, round(side * head.height / head.width)))
        crowd.paste(piece, (x + (i % 2) * 0, y))
        k = side / head.width
        boxes.append((x + (FACE[0] - 122) * k, y + (FACE[1] - 8) * k, x + (FACE[2] - 122) * k, y + (FACE[3] - 8) * k))
    found.append(("crowd of 6", crowd, boxes))
    return found


def score(detections: list[Box], truth: list[Box]) -> tuple[int, int]:
    """(hits, false positives)."""
    unmatched = list(truth)
    hits = false = 0
    for x0, y0, x1, y1 in detections:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        match = next((b for b in unmatched if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]), None)
        if match is None:
            false += 1
        else:
            unmatched.remove(match)
            hits += 1
    return hits, false


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "data" / "weights" / "faces")
    args = parser.parse_args()
    from engine.kinds.faces import find_faces

    model = str(args.weights / "face_detection_full_range.tflite")
    totals = {"Haar": [0, 0, 0.0], "BlazeFace": [0, 0, 0.0]}
    print("| case | faces | Haar hits / false | BlazeFace hits / false |\n|---|---|---|---|")
    for name, picture, truth in cases():
        row = []
        for detector, path in (("Haar", ""), ("BlazeFace", model)):
            started = time.perf_counter()
            boxes = [face.box for face in find_faces(picture, blazeface=path)]
            totals[detector][2] += time.perf_counter() - started
            hits, false = score(boxes, truth)
            totals[detector][0] += hits
            totals[detector][1] += false
            row.append(f"{hits} / {false}")
        print(f"| {name} | {len(truth)} | {row[0]} | {row[1]} |", flush=True)
    faces = sum(len(truth) for _, _, truth in cases())
    haar, cnn = totals["Haar"], totals["BlazeFace"]
    print(f"| **total** | {faces} | **{haar[0]} / {haar[1]}** | **{cnn[0]} / {cnn[1]}** |")
    print(f"\nseconds for all {len(cases())} pictures: Haar {haar[2]:.2f}, BlazeFace {cnn[2]:.2f}")


if __name__ == "__main__":
    main()
