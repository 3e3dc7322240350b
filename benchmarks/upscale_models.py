"""Seconds per 512² → 2048² (×4; ``--size``) on this machine: the real Real-ESRGAN models against Lanczos.

    python benchmarks/upscale_models.py --weights data/weights      # after `remixbot weights install realesrgan`
    python benchmarks/upscale_models.py --weights … --picture docs/upscale.jpg

Every row runs the engine's own code in this process, the way the Upscale button does: the
classic kind's Lanczos + unsharp mask, and the ``upscale-spandrel`` kind (tiles of 512 px with 32 px
of overlap, so a 512² source is one tile) on the three converted models. Each model is loaded and
warmed up on a 32² image first; the figure is the median of ``--repeat`` runs (default 1: x4plus
takes minutes on a small CPU). ``--threads`` sets torch's threads (default: all). The source is the
centre of tests/fixtures/images/astronaut.png. ``--picture`` writes a side-by-side of a 128 px detail
(an eye and the mission patch's edge) upscaled ×4 by each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {  # registry name → installed file (config/models.toml)
    "realesrgan-fast": "realesrgan/realesr-animevideov3-x4.safetensors",
    "realesrgan-anime": "realesrgan/realesrgan-x4plus-anime.safetensors",
    "realesrgan-x4": "realesrgan/realesrgan-x4plus.safetensors",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "data" / "weights")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--picture", type=Path, help="write a side-by-side crop (JPEG) here")
    parser.add_argument("--only", default="", help="comma-separated rows to run (classic, realesrgan-fast, …)")
    parser.add_argument("--size", type=int, default=512, help="the source's side, px (the output is 4× that)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from bot.jobs import Action, Request
    from bot.models import ModelEntry
    from engine.kinds import classic, upscale
    from engine.work import Work

    if args.threads:
        torch.set_num_threads(args.threads)
    photo = Image.open(ROOT / "tests" / "fixtures" / "images" / "astronaut.png").convert("RGB")
    side = args.size
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    source = photo.crop((left, top, left + side, top + side))
    # the picture: her eye and the patch's edge, 128 px of the photo, upscaled on its own
    detail = photo.crop((196, 96, 324, 224))

    def work(entry: ModelEntry, image: Image.Image) -> Work:
        request = Request(prompt="", model=entry.name, strength=1.0, scale=4)
        return Work(Action.upscale, request, entry, image, (), (1,), "cpu")

    rows: dict[str, tuple[float, Image.Image]] = {}
    pictures: dict[str, Image.Image] = {}
    wanted = set(filter(None, args.only.split(","))) or {"classic", *MODELS}
    entries = {"classic": ModelEntry(name="classic", kind="classic")}
    entries |= {
        name: ModelEntry(name=name, kind="upscale-spandrel", source=str(args.weights / f)) for name, f in MODELS.items()
    }
    for name, entry in entries.items():
        if name not in wanted:
            continue
        model = classic.load(entry, "cpu") if entry.kind == "classic" else upscale.load(entry, "cpu")
        model.run(work(entry, source.resize((32, 32))), lambda *_: None)  # warm-up
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            [out] = model.run(work(entry, source), lambda *_: None)
            times.append(time.perf_counter() - started)
        assert out.size == (4 * side, 4 * side), out.size
        rows[name] = (statistics.median(times), out)
        if args.picture:
            [pictures[name]] = model.run(work(entry, detail), lambda *_: None)
        print(f"{name:<18} {statistics.median(times):8.2f} s", flush=True)

    print(f"\n| upscale {side}² → {4 * side}² | seconds (median of {args.repeat}) | vs Lanczos |\n|---|---|---|")
    base = rows.get("classic", (0.0, None))[0]
    for name, (seconds, _) in rows.items():
        ratio = f"{seconds / base:.0f}×" if base else "–"
        print(f"| {name} | {seconds:.2f} | {ratio} |")
    if args.picture:
        from PIL import ImageDraw

        crops = [("source (nearest, x4)", detail.resize((512, 512), Image.Resampling.NEAREST))]
        crops += [(name, picture) for name, picture in pictures.items()]
        sheet = Image.new("RGB", (len(crops) * 520 - 8, 512 + 24), "white")
        draw = ImageDraw.Draw(sheet)
        for i, (label, crop) in enumerate(crops):
            sheet.paste(crop, (i * 520, 24))
            draw.text((i * 520 + 4, 6), "Lanczos x4 (classic)" if label == "classic" else label, fill="black")
        sheet.save(args.picture, quality=85)


if __name__ == "__main__":
    main()
