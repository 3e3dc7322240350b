"""Benchmark 2: the engine on a CPU against plain diffusers, SD-Turbo-sized img2img at 512x512.

    python benchmarks/cpu.py [--images 4] [--folder /tmp/remixbot-bench/sd21]
                             [--options '{"channels_last": true}']

The pipeline is SD 2.1 / SD-Turbo's architecture with random weights (benchmarks/pipelines.py),
written once to ``--folder``. Each side runs in its own process, one after the other, so that its
peak RSS is its own:

* plain: ``StableDiffusionImg2ImgPipeline.from_pretrained(folder)`` with diffusers' defaults, one
  image at a time, then PNG-encoded (the bot has to send a file);
* engine: ``engine.runner.Engine`` with the registry entry's CPU options, ``--images`` jobs submitted
  at once (PNG in, PNG out), run as one batch, and again with batching off (the CPU default).

Turbo settings: 2 steps at strength 0.5 (one denoising step), no classifier-free guidance. Both
sides run one untimed warm-up image first (oneDNN builds its kernels then). Seconds per image is
the timed wall time over the number of images.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path: put the repository root there instead.
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCE = ROOT / "tests" / "fixtures" / "images" / "astronaut.png"  # 512x512
PROMPT = "an astronaut riding a horse, watercolor"
STEPS, STRENGTH, GUIDANCE, SIDE = 2, 0.5, 0.0, 512
# What the engine runs on a CPU (see BENCHMARKS.md for the options that were measured).
CPU_OPTIONS: dict = {"sdpa": True, "channels_last": False}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kB


def source_png() -> bytes:
    from PIL import Image

    with Image.open(SOURCE) as image:
        buffer = io.BytesIO()
        image.convert("RGB").resize((SIDE, SIDE)).save(buffer, "PNG")
        return buffer.getvalue()


def plain(folder: Path, images: int) -> dict:
    import diffusers
    import torch
    from PIL import Image

    started = time.perf_counter()
    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - started

    def one(seed: int) -> bytes:
        source = Image.open(io.BytesIO(source_png())).convert("RGB")
        image = pipe(
            PROMPT,
            image=source,
            strength=STRENGTH,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            generator=torch.Generator().manual_seed(seed),
        ).images[0]
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    warm = time.perf_counter()
    one(1000)
    warm = time.perf_counter() - warm
    started = time.perf_counter()
    latencies = []
    for seed in range(images):
        began = time.perf_counter()
        one(seed)
        latencies.append(time.perf_counter() - began)
    total = time.perf_counter() - started
    return {"load_s": loaded, "warmup_s": warm, "seconds_per_image": total / images, "latencies": latencies}


def engine(folder: Path, images: int, options: dict, window: float, batch: int) -> dict:
    from benchmarks.pipelines import registry_entry
    from bot.jobs import Action, Job, Origin, Request, Status
    from bot.models import Models
    from engine.runner import Engine

    entry = registry_entry(
        "turbo",
        folder,
        size=SIDE,
        strength=STRENGTH,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        options=options,
    )
    models = Models(entries={"turbo": entry}, defaults={})
    engine = Engine(models, "cpu", batch_size=batch, batch_window=window)
    data = source_png()

    def job(seed: int) -> Job:
        request = Request(
            prompt=PROMPT,
            model="turbo",
            strength=STRENGTH,
            seed=seed,
            size=SIDE,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
        )
        return Job(
            id=f"job{seed}",
            action=Action.remix,
            request=request,
            image=data,
            origin=Origin("bench", "cpu"),
            group="gpu",
        )

    async def run(seed: int) -> float:
        began = time.perf_counter()
        result = await engine.run(job(seed), lambda step, total: None, threading.Event())
        if result.status is not Status.done:
            raise SystemExit(f"engine job failed: {result.error}")
        return time.perf_counter() - began

    async def main() -> dict:
        started = time.perf_counter()
        await asyncio.to_thread(engine.load, entry)
        loaded = time.perf_counter() - started
        warm = await run(1000)
        started = time.perf_counter()
        latencies = await asyncio.gather(*(run(seed) for seed in range(images)))
        total = time.perf_counter() - started
        return {
            "load_s": loaded,
            "warmup_s": warm,
            "seconds_per_image": total / images,
            "latencies": latencies,
            "batches": dict(engine.batches),
        }

    try:
        return asyncio.run(main())
    finally:
        engine.close()


def child(args: argparse.Namespace) -> None:
    import torch

    if args.child == "plain":
        measured = plain(args.folder, args.images)
    else:
        measured = engine(args.folder, args.images, json.loads(args.options), args.window, args.batch)
    measured.update(mode=args.child, peak_rss_gib=peak_rss_gib(), threads=torch.get_num_threads())
    print("RESULT " + json.dumps(measured), flush=True)


def measure(args: argparse.Namespace, mode: str, batch: int = 1) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--folder",
        str(args.folder),
        "--images",
        str(args.images),
        "--options",
        args.options,
        "--window",
        str(args.window),
        "--batch",
        str(batch),
    ]
    before = os.getloadavg()[0]  # other work on the machine skews the timings: shown in the table
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["load"] = (before, os.getloadavg()[0])
    print(
        f"  {mode:<8} batch {batch}: {result['seconds_per_image']:.2f} s/image, "
        f"peak RSS {result['peak_rss_gib']:.2f} GiB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="timed images per side (the engine's batch)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/remixbot-bench/sd21"))
    parser.add_argument("--options", default=json.dumps(CPU_OPTIONS), help="the engine entry's options (JSON)")
    parser.add_argument("--window", type=float, default=0.05, help="the engine's batch window, seconds")
    parser.add_argument("--child", choices=("plain", "engine"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from benchmarks.pipelines import build

    started = time.perf_counter()
    build("sd21", args.folder)
    print(
        f"SD-Turbo-sized img2img, {SIDE}x{SIDE}, {STEPS} steps at strength {STRENGTH}, "
        f"guidance {GUIDANCE}, "
        f"{args.images} images per side, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = [
        ("plain diffusers (defaults, one at a time)", measure(args, "plain")),
        (f"engine, {args.images} concurrent jobs, batched", measure(args, "engine", batch=args.images)),
        (f"engine, {args.images} concurrent jobs, batching off (CPU default)", measure(args, "engine")),
    ]
    print()
    print(f"engine options: {args.options}\n")
    print(
        "| path | s/image | speed-up | p50 latency (s) | peak RSS (GiB) | warm-up image (s) | batches "
        "| load avg before/after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = rows[0][1]["seconds_per_image"]
    for label, r in rows:
        batches = ", ".join(f"{n} of {size}" for size, n in r["batches"].items()) if "batches" in r else "-"
        print(
            f"| {label} | {r['seconds_per_image']:.2f} | {base / r['seconds_per_image']:.2f}x | "
            f"{statistics.median(r['latencies']):.1f} | {r['peak_rss_gib']:.2f} | {r['warmup_s']:.1f} | "
            f"{batches} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |"
        )
    print(f"\n(total {time.perf_counter() - started:.0f} s; torch threads {rows[0][1]['threads']})")


if __name__ == "__main__":
    main()
