"""The content classifier on this CPU: ms per picture and its verdict on each fixture photo.

    python benchmarks/safety.py            # needs pip install 'remixbot[nsfw]'
    python benchmarks/safety.py --repeat 20

Rows: our NudeNet runner (``engine/kinds/nudenet.py``, one onnxruntime thread, what the bot and
the workers run), and nudenet's own ``NudeDetector.detect`` in the same run as the baseline (its
default session options: every core). Each photo is classified once to warm up, then ``--repeat``
times; the figure is the median. The load time of the model is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from bot.models import ModelEntry  # noqa: E402
from engine.kinds import nudenet  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "fixtures" / "images").glob("*.*"))


def _median_ms(function, repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    import cv2
    from nudenet import NudeDetector

    started = time.perf_counter()
    ours = nudenet.load(ModelEntry(name="nudenet", kind="nudenet"), "cpu")
    load_ours = time.perf_counter() - started
    started = time.perf_counter()
    theirs = NudeDetector()
    load_theirs = time.perf_counter() - started
    print(f"cpu: {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    print(f"load: ours {1000 * load_ours:.0f} ms, nudenet's {1000 * load_theirs:.0f} ms")
    print("| photo | size | ours ms | nudenet's ms | verdict | top detection |")
    print("|---|---|---|---|---|---|")
    for path in PHOTOS:
        with Image.open(path) as image:
            picture = image.convert("RGB")
        bgr = cv2.imread(str(path))
        ms_ours = _median_ms(lambda picture=picture: ours.detect(picture), args.repeat)
        ms_theirs = _median_ms(lambda bgr=bgr: theirs.detect(bgr), args.repeat)
        detections = ours.detect(picture)
        verdict = ours.verdict(detections)
        top = max(detections, key=lambda d: d.score, default=None)
        seen = f"{top.label} {top.score:.2f}" if top else "none"
        word = "flagged" if verdict.flagged else "safe"
        print(f"| {path.name} | {picture.width}×{picture.height} | {ms_ours:.1f} | {ms_theirs:.1f} | {word} | {seen} |")
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
