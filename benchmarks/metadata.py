"""Benchmark: reading the settings a picture carries (``bot.metadata.read_generation``) against the
readers it replaced or wraps, on ordinary and hostile files.

    python benchmarks/metadata.py [--rounds 20]

Paths, interleaved round by round in one process (median ms per file):

* *old A1111 reader*: ``images.read_parameters`` + ``images.parse_parameters`` (what ``_prepare`` ran
  before: A1111 text before the pixels and EXIF only) — the baseline for the A1111 files;
* *sd-parsers as shipped*: ``sd_parsers.ParserManager().parse`` on the whole file (every format,
  ComfyUI graphs walked along all their links, PNG text after the pixels found by decoding the image);
* *read_generation*: the bounded chunk walk, A1111 by our linear reader, other formats by sd-parsers'
  parsers, ComfyUI read without its links first.

Files: A1111 PNG, A1111 JPEG (EXIF), ComfyUI PNG (8 nodes), the 1 MB zTXt text bomb, and a hostile
ComfyUI graph of N chained samplers (N = 100, 200, 300). sd-parsers on the chained graphs is run
once per round at most (it takes seconds) and skipped past 300 nodes.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sd_parsers import ParserManager  # noqa: E402

from bot import images, metadata  # noqa: E402
from tests.bot.test_metadata import (  # noqa: E402
    A1111_TEXT,
    COMFY_PROMPT,
    COMFY_WORKFLOW,
    chained_samplers,
    png,
    with_user_comment,
)
from tests.fixtures.hostile import text_bomb_png  # noqa: E402


def old_reader(data: bytes) -> object:
    text = images.read_parameters(data)
    return images.parse_parameters(text) if text else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    files = {
        "A1111 PNG": png({"parameters": A1111_TEXT}),
        "A1111 JPEG (EXIF)": with_user_comment(A1111_TEXT, "JPEG"),
        "ComfyUI PNG, 8 nodes": png({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)}),
        "1 MB zTXt text bomb": text_bomb_png(),
        **{f"ComfyUI, {n} chained samplers": chained_samplers(n) for n in (100, 200, 300)},
    }
    manager = ParserManager()
    paths: dict[str, Callable[[bytes], object]] = {
        "old A1111 reader": old_reader,
        "sd-parsers as shipped": lambda data: manager.parse(io.BytesIO(data)),
        "read_generation": metadata.read_generation,
    }
    times: dict[tuple[str, str], list[float]] = {(f, p): [] for f in files for p in paths}
    for round_ in range(rounds):
        for file, data in files.items():
            for path, read in paths.items():
                if "chained" in file and path == "sd-parsers as shipped" and round_ >= 3:
                    continue  # seconds each: three rounds tell
                started = time.perf_counter()
                read(data)
                times[(file, path)].append((time.perf_counter() - started) * 1000)
    print("| file | bytes | " + " | ".join(paths) + " |")
    print("|---|---|" + "---|" * len(paths))
    for file, data in files.items():
        cells = [f"{statistics.median(times[(file, path)]):.2f} ms" for path in paths]
        print(f"| {file} | {len(data):,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
