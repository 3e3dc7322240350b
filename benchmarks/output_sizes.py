"""Seconds and peak memory of ``--size 2k``/``4k`` and of ✂️ Cut out on this machine, against a plain render.

    remixbot weights install realesrgan cutout
    nice -n 5 python benchmarks/output_sizes.py --weights data/weights   # about 2 minutes on 2 busy cores
    nice -n 5 python benchmarks/output_sizes.py --weights … --x4plus     # adds x4plus at 2048: many minutes
    python benchmarks/output_sizes.py --weights … --dry-run              # tiny sizes: every row runs, no figures

Every row is one job through the engine's own ``Engine.run_sync``, the way the flag or the button makes
it: the shipped config/models.toml (its tiles and overlaps), the classic model, a source PNG-decoded,
rendered, upscaled by ``Engine.enlarge`` and PNG-encoded with its parameters (no content classifier).
Part 1 is a remix of docs/coffee.jpg (600×400; the classic model renders it at 600 px): a plain render
at that working size (the baseline, run first and again last to show how the load drifted), then
``--size 2048`` and ``--size 4096`` with the Upscale button's first choice set to Lanczos (classic) or
to Real-ESRGAN compact (``realesrgan-fast``, the shipped default). Part 2 is the ✂️ Cut out button on the
coffee photo at 768 px: transparent, ``--background white``, ``--background blur`` and a prompt
background (the classic fill), against a plain remix of the same 768 px picture.

Each row runs in a fresh process: the models are loaded and warmed up on a 64 px copy of the job,
then the peak resident set size is reset (``/proc/self/clear_refs``) and the job runs; "peak RSS" is
the whole process's peak (Python, torch and the models included), "added" is what the job took
over the warmed-up process. The figure is the median of ``--repeat`` runs (default 1). The load
average is printed: the development VM is shared, so the seconds are this machine's at that load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "warm golden light"  # a classic look: the render itself is a fraction of a second
PROMPT_BACKGROUND = "a sunny beach"
CUT_SIDE = 768


@dataclass(frozen=True)
class Row:
    label: str
    part: int  # 1: --size, 2: Cut out
    size: int | None = None  # --size; None: the model's working size
    upscaler: str = "classic"  # the Upscale button's first choice ([defaults] upscale)
    cutout: bool = False
    background: str | None = None


def rows(x4plus: bool, sizes: tuple[int, int], cut_side: int) -> list[Row]:
    two, four = sizes
    listed = [Row("plain render at the working size (baseline)", 1)]
    for size in (two, four):
        listed.append(Row(f"--size {size}, Lanczos", 1, size, "classic"))
        listed.append(Row(f"--size {size}, Real-ESRGAN compact", 1, size, "realesrgan-fast"))
        if x4plus and size == two:
            listed.append(Row(f"--size {size}, Real-ESRGAN x4plus", 1, size, "realesrgan-x4"))
    listed.append(Row("plain render at the working size (baseline, again)", 1))
    listed.append(Row(f"plain remix of the {cut_side} px picture (baseline)", 2, cut_side))
    listed.append(Row("Cut out, transparent", 2, cutout=True))
    listed.append(Row("Cut out, --background white", 2, cutout=True, background="white"))
    listed.append(Row("Cut out, --background blur", 2, cutout=True, background="blur"))
    listed.append(Row(f'Cut out, --background "{PROMPT_BACKGROUND}"', 2, cutout=True, background=PROMPT_BACKGROUND))
    return listed


def _status_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def measure(row: Row, weights: Path, dry_run: bool, repeat: int) -> dict[str, object]:
    """One row in this process: warm up on a 64 px copy, reset the peak RSS, run the job ``repeat`` times."""
    from PIL import Image

    from bot.jobs import Action, Job, Origin, Request, Result, Status
    from bot.models import load_models
    from bot.settings import Limits
    from engine.runner import Engine

    models = load_models(ROOT / "config" / "models.toml", weights=weights)
    models = replace(models, choices={**models.choices, Action.upscale: (row.upscaler, "classic")})
    max_render = 128 if dry_run else Limits().max_size
    engine = Engine(models, "cpu", max_render=max_render)
    coffee = Image.open(ROOT / "docs" / "coffee.jpg").convert("RGB")
    if dry_run:
        coffee.thumbnail((160, 160), Image.Resampling.LANCZOS)
    if row.part == 2:
        side = 128 if dry_run else CUT_SIDE
        coffee = coffee.resize((side, round(side * coffee.height / coffee.width)), Image.Resampling.LANCZOS)

    def job(picture: Image.Image, size: int | None) -> Job:
        data = io.BytesIO()
        picture.save(data, format="PNG")
        model, strength = ("cutout", 1.0) if row.cutout else ("classic", 0.6)
        request = Request(prompt=PROMPT, model=model, strength=strength, seed=1, size=size, background=row.background)
        action = Action.cutout if row.cutout else Action.remix
        return Job(id="0123456789ab", action=action, request=request, image=data.getvalue(), origin=Origin("cli", "0"))

    def run(picture: Image.Image, size: int | None) -> tuple[float, Result]:
        started = time.perf_counter()
        result = engine.run_sync(job(picture, size), lambda step, total: None)
        seconds = time.perf_counter() - started
        if result.status is not Status.done:
            raise SystemExit(f"{row.label}: {result.status.value}: {result.error}")
        return seconds, result

    try:
        small = coffee.copy()
        small.thumbnail((64, 64))
        # the warm-up: the same job on a 64 px copy (an upscale row asks for just over the render cap)
        run(small, row.size if row.size is None or row.size <= max_render else max_render + 1)
        before = _status_kib("VmRSS")
        if before is not None:
            Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) back to the current RSS
        times = []
        for _ in range(repeat):
            seconds, result = run(coffee, row.size)
            times.append(seconds)
        peak = _status_kib("VmHWM")
    finally:
        engine.close()
    output = result.outputs[0]
    return {
        "seconds": round(statistics.median(times), 2),
        "peak_mib": None if peak is None else round(peak / 1024),
        "added_mib": None if peak is None or before is None else round((peak - before) / 1024),
        "output": f"{output.width}×{output.height}",
        "note": result.note,
        "engine": result.engine,
        "load": round(os.getloadavg()[0], 1),
    }


def run_child(row: Row, weights: Path, dry_run: bool, repeat: int) -> dict[str, object]:
    """``measure`` in a fresh Python process: one row's memory never counts for another."""
    command = [sys.executable, __file__, "--child", json.dumps(row.__dict__), "--weights", str(weights)]
    command += ["--repeat", str(repeat)] + (["--dry-run"] if dry_run else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{row.label} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    measured: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def table(title: str, measured: list[tuple[Row, dict[str, object]]]) -> None:
    base = float(str(measured[0][1]["seconds"]))
    print(f"\n| {title} | output | seconds | vs baseline | peak RSS | added by the job | load |")
    print("|---|---|---|---|---|---|---|")
    for row, m in measured:
        seconds = float(str(m["seconds"]))
        ratio = f"{seconds / base:.1f}×" if base else "–"
        peak = "–" if m["peak_mib"] is None else f"{m['peak_mib']} MiB"
        added = "–" if m["added_mib"] is None else f"{m['added_mib']} MiB"
        print(f"| {row.label} | {m['output']} | {seconds:.2f} | {ratio} | {peak} | {added} | {m['load']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "data" / "weights")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--x4plus", action="store_true", help="add Real-ESRGAN x4plus at 2048 (many minutes on a CPU)")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes (render cap 128, --size 256/512): no figures"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Row(**json.loads(args.child)), args.weights, args.dry_run, args.repeat)))
        return

    import torch

    started = time.perf_counter()
    sizes = (256, 512) if args.dry_run else (2048, 4096)
    dry = "DRY RUN (tiny sizes: the numbers mean nothing) - " if args.dry_run else ""
    print(
        f"{dry}{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start, "
        f"median of {args.repeat}, nice {os.nice(0)}",
        flush=True,
    )
    measured: list[tuple[Row, dict[str, object]]] = []
    for row in rows(args.x4plus, sizes, 128 if args.dry_run else CUT_SIDE):
        m = run_child(row, args.weights, args.dry_run, args.repeat)
        measured.append((row, m))
        print(f"  {row.label}: {m['seconds']} s, {m['output']}, {m['note'] or m['engine']}", flush=True)
    if not args.x4plus:
        print("  Real-ESRGAN x4plus: not run (--x4plus adds it at 2048: about 7 minutes on 2 busy cores)")
    table("--size on docs/coffee.jpg, classic", [(r, m) for r, m in measured if r.part == 1])
    table(f"Cut out at {128 if args.dry_run else CUT_SIDE} px", [(r, m) for r, m in measured if r.part == 2])
    print(
        f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; "
        f"{time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
