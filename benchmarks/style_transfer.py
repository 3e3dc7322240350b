"""Seconds per style transfer on this machine, and the contact sheet of the 26 built-in styles.

    python benchmarks/style_transfer.py --weights data/weights/style            # after `remixbot weights install style`
    python benchmarks/style_transfer.py --weights … --sheet docs/styles.jpg

Runs the ``style-transfer`` kind's own ``run`` on docs/coffee.jpg (600×400) and on a 1024 px
photo: a built-in style named in the prompt, and one reference image as the style (tiled 384 px
transform over the whole picture), against the classic kind's "watercolor" on the same image. The
figure is the median of ``--repeat`` runs after one warm-up (sessions loaded). ``--sheet`` writes
each built-in style on the coffee photo, labelled with its name (docs/styles.jpg).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "data" / "weights" / "style")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sheet", type=Path, help="write the 26-style contact sheet (JPEG) here")
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    from bot.jobs import Action, Request
    from bot.models import ModelEntry
    from engine.kinds import classic, style
    from engine.work import Work

    coffee = Image.open(ROOT / "docs" / "coffee.jpg").convert("RGB")
    big = Image.open(ROOT / "tests" / "fixtures" / "images" / "chelsea.png").convert("RGB")
    big = big.resize((1024, round(1024 * big.height / big.width)), Image.Resampling.LANCZOS)
    rocket = Image.open(ROOT / "tests" / "fixtures" / "images" / "rocket.jpg").convert("RGB")
    entry = ModelEntry(name="style", kind="style-transfer", source=str(args.weights))
    model = style.load(entry, "cpu")
    plain = classic.load(ModelEntry(name="classic", kind="classic"), "cpu")

    def timed(run, image: Image.Image, prompt: str, references=()) -> float:
        request = Request(prompt=prompt, model="style", strength=1.0, seed=1)
        work = Work(Action.remix, request, entry, image, tuple(references), (1,), "cpu")
        run(work, lambda *_: None)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run(work, lambda *_: None)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    print("| image | classic watercolor | style: starry (built-in) | style: a reference image |\n|---|---|---|---|")
    for label, image in (("coffee.jpg 600×400", coffee), (f"photo {big.width}×{big.height}", big)):
        row = [
            timed(plain.run, image, "watercolor"),
            timed(model.run, image, "starry"),
            timed(model.run, image, "", [rocket]),
        ]
        print(f"| {label} | " + " | ".join(f"{s:.2f} s" for s in row) + " |", flush=True)

    if args.sheet:
        thumb = coffee.copy()
        thumb.thumbnail((240, 240))
        tiles = [("source", thumb)]
        for name in style.STYLES:
            request = Request(prompt=name, model="style", strength=1.0, seed=1)
            [out] = model.run(Work(Action.remix, request, entry, thumb, (), (1,), "cpu"), lambda *_: None)
            tiles.append((name, out))
        columns, label = 9, 18
        width, height = thumb.size
        sheet = Image.new("RGB", (columns * (width + 4) + 4, 3 * (height + label + 4) + 4), "white")
        draw = ImageDraw.Draw(sheet)
        for n, (name, tile) in enumerate(tiles):
            row, column = divmod(n, columns)
            x, y = 4 + column * (width + 4), 4 + row * (height + label + 4)
            draw.text((x + 2, y + 3), name, fill="black")
            sheet.paste(tile, (x, y + label))
        sheet.save(args.sheet, quality=82)


if __name__ == "__main__":
    main()
