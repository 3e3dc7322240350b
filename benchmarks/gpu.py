"""Benchmark 3: the engine on a GPU against plain diffusers, SD1.5- and SDXL-sized img2img.

    python benchmarks/gpu.py [--models sd15,sdxl] [--jobs 16] [--plain-images 8]
                             [--variants '[{}, {"compile": "regional"}]'] [--peak-tflops 989]
    python benchmarks/gpu.py --dry-run   # tiny pipelines, any device: checks the code path only
    python benchmarks/gpu.py --models turbo  # only the Turbo-size single-image latency rows

Random-weight pipelines with the real architectures (benchmarks/pipelines.py), in float16:
SD1.5 at 512x512 and SDXL at 1024x1024, 30 steps at strength 0.6 (18 denoising steps) with
guidance 7.5, so every UNet call runs a batch of two (classifier-free guidance).

* plain: ``<Pipeline>.from_pretrained(folder, torch_dtype=float16).to("cuda")`` with diffusers'
  defaults, one job at a time, output PNG-encoded;
* engine: ``engine.runner.Engine`` serving ``--jobs`` concurrent jobs (PNG in, PNG out), batched,
  once per options variant (``--variants``: registry options on top of the entry's defaults).

``turbo`` (in ``--models`` by default): the figure a chat user feels. SD-Turbo's architecture (SD 2.1)
at 512x512 with Turbo settings (2 steps at strength 0.5: one UNet call; guidance 0), ONE job at a time:
submit → PNG latency, plain diffusers (PNG in, PNG out) against ``Engine.run`` per variant
(``--turbo-variants``; ``"TAESD"`` as a ``tiny_vae`` value stands for a random-weight TAESD built here).

Both sides warm up first (the engine with a whole round of jobs, untimed). Reported: images/s, p50
latency (submit to PNG), peak GPU memory (torch's allocator), and achieved TFLOP/s: the UNet FLOPs
of the timed images (counted once with torch's FlopCounterMode, for one guided step at that size)
over the wall time, against the card's dense bf16/fp16 peak (H100/H200 SXM: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path: put the repository root there instead.
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCE = ROOT / "tests" / "fixtures" / "images" / "astronaut.png"
PROMPT = "an astronaut riding a horse on the moon, highly detailed, cinematic light"
STEPS, STRENGTH, GUIDANCE = 30, 0.6, 7.5
TURBO = (2, 0.5, 0.0)  # SD-Turbo img2img: steps × strength = one UNet call, no guidance
# architecture → (side, reference TFLOP of one guided UNet step at that side)
SIZES = {"sd15": (512, 1.61), "sdxl": (1024, 13.5), "tiny-sd15": (64, None), "tiny-sdxl": (128, None)}
TURBO_ARCH = {False: ("sd21", 512), True: ("tiny-sd15", 64)}  # (architecture, side) by dry run
PEAKS = {
    "H100": 989.4,
    "H200": 989.4,
    "H800": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.2,
}  # dense bf16/fp16 TFLOP/s (tensor cores)


def source_png(side: int) -> bytes:
    from PIL import Image

    with Image.open(SOURCE) as image:
        buffer = io.BytesIO()
        image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS).save(buffer, "PNG")
        return buffer.getvalue()


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def unet_step_flops(pipe: Any, call: Any) -> float:
    """FLOPs of one UNet call (one guided step) during ``call()``, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counts: list[int] = []
    forward = pipe.unet.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        with FlopCounterMode(display=False) as counter:
            out = forward(*args, **kwargs)
        counts.append(counter.get_total_flops())
        return out

    pipe.unet.forward = counted
    try:
        call()
    finally:
        del pipe.unet.forward  # back to the class's forward
    return float(counts[0])


def plain(
    arch: str,
    folder: Path,
    device: str,
    dtype: str,
    images: int,
    side: int,
    settings: tuple = (STEPS, STRENGTH, GUIDANCE),
) -> dict:
    import diffusers
    import torch
    from PIL import Image

    from benchmarks.pipelines import ARCHITECTURES

    reset_memory(device)
    cls = getattr(diffusers, ARCHITECTURES[arch]["pipeline"])
    from engine.kinds.sources import dtype_kwarg  # "dtype" in new diffusers, "torch_dtype" before

    pipe = cls.from_pretrained(str(folder), **{dtype_kwarg(): getattr(torch, dtype)}).to(device)
    pipe.set_progress_bar_config(disable=True)
    data = source_png(side)

    steps_, strength, guidance = settings

    def one(seed: int, steps: int = steps_) -> bytes:
        source = Image.open(io.BytesIO(data)).convert("RGB")
        generator = torch.Generator(device).manual_seed(seed)
        image = pipe(
            PROMPT,
            image=source,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
        ).images[0]
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    flops = unet_step_flops(pipe, lambda: one(999, steps=max(2, steps_)))
    one(1000)  # warm-up
    synchronize(device)
    latencies = []
    started = time.perf_counter()
    for seed in range(images):
        began = time.perf_counter()
        one(seed)
        synchronize(device)
        latencies.append(time.perf_counter() - began)
    wall = time.perf_counter() - started
    memory = peak_memory_gib(device)
    pipe = None  # freed before the engine's turn
    reset_memory(device)
    return {"images": images, "wall": wall, "latencies": latencies, "memory": memory, "step_flops": flops}


def engine(
    arch: str,
    folder: Path,
    device: str,
    dtype: str,
    jobs: int,
    side: int,
    options: dict,
    settings: tuple = (STEPS, STRENGTH, GUIDANCE),
    serial: bool = False,
) -> dict:
    """``jobs`` jobs through ``Engine.run``: all at once (batched), or one after another (``serial``)."""
    from benchmarks.pipelines import registry_entry
    from bot.jobs import Action, Job, Origin, Request, Status
    from bot.models import Models
    from engine.runner import Engine

    reset_memory(device)
    steps, strength, guidance = settings
    entry = registry_entry(
        arch,
        folder,
        size=side,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=guidance,
        options={"dtype": dtype, "cpu_dtype": dtype, **options},
    )
    batch = 1 if serial else jobs
    runner = Engine(Models(entries={arch: entry}, defaults={}), device, batch_size=batch, batch_window=0.05)
    data = source_png(side)
    failures: list[str] = []

    async def run(seed: int) -> float:
        request = Request(
            prompt=PROMPT,
            model=arch,
            strength=strength,
            seed=seed,
            size=side,
            num_inference_steps=steps,
            guidance_scale=guidance,
        )
        job = Job(
            id=f"job{seed}",
            action=Action.remix,
            request=request,
            image=data,
            origin=Origin("bench", "gpu"),
            group="gpu",
        )
        began = time.perf_counter()
        result = await runner.run(job, lambda step, total, preview=b"": None, threading.Event())
        if result.status is not Status.done:
            failures.append(result.error)
        return time.perf_counter() - began

    async def main() -> dict:
        began = time.perf_counter()
        await asyncio.to_thread(runner.load, entry)
        loaded = time.perf_counter() - began
        if serial:  # one job at a time: what a single chat user waits for
            await run(10_000)
            synchronize(device)
            started = time.perf_counter()
            latencies = [await run(seed) for seed in range(jobs)]
        else:
            await asyncio.gather(*(run(10_000 + seed) for seed in range(jobs)))  # warm-up: a whole batch
            synchronize(device)
            started = time.perf_counter()
            latencies = await asyncio.gather(*(run(seed) for seed in range(jobs)))
        wall = time.perf_counter() - started
        return {"images": jobs, "wall": wall, "latencies": list(latencies), "load_s": loaded}

    try:
        measured = asyncio.run(main())
    finally:
        runner.close()
    model = runner.residency.peek(arch)
    measured.update(
        memory=peak_memory_gib(device),
        batches=dict(runner.batches),
        failures=failures,
        speed=getattr(model, "speed", {}),
    )
    model = runner = None  # freed before the next variant
    reset_memory(device)
    return measured


def peak_tflops(device: str, given: float | None) -> float | None:
    if given:
        return given
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAKS.items() if key in name), None)


def row(
    label: str, measured: dict, step_flops: float, peak: float | None, base: float | None, denoising: int = 0
) -> str:
    denoising = denoising or int(STEPS * STRENGTH)
    throughput = measured["images"] / measured["wall"]
    tflops = measured["images"] * denoising * step_flops / measured["wall"] / 1e12
    memory = "-" if measured["memory"] is None else f"{measured['memory']:.1f}"
    share = f"{100 * tflops / peak:.0f}%" if peak else "n/a"
    speedup = f"{throughput / base:.2f}x" if base else "1.00x"
    batches = ", ".join(f"{n} of {size}" for size, n in measured.get("batches", {}).items()) or "-"
    if measured.get("failures"):
        batches += f"; {len(measured['failures'])} FAILED: {measured['failures'][0]}"
    return (
        f"| {label} | {throughput:.2f} | {speedup} | {statistics.median(measured['latencies']):.2f} | "
        f"{memory} | {tflops:.1f} | {share} | {batches} |"
    )


def turbo(workdir: Path, device: str, dtype: str, images: int, variants: list, peak: float | None, dry: bool) -> None:
    """The Turbo-size single-image rows: submit → PNG, one job at a time, plain diffusers vs the engine."""
    from benchmarks.pipelines import build, build_tiny_vae

    arch, side = TURBO_ARCH[dry]
    folder = build(arch, workdir / f"{arch}-{dtype}", dtype=dtype, device=device)
    taesd = str(build_tiny_vae(workdir / "taesd"))
    steps, strength, _ = TURBO
    denoising = int(steps * strength)
    base = plain(arch, folder, device, dtype, images, side, settings=TURBO)
    lines = [row("plain diffusers, one at a time", base, base["step_flops"], peak, None, denoising)]
    print(f"  turbo plain done ({base['wall']:.1f} s)", flush=True)
    for options in variants:
        options = {k: (taesd if v == "TAESD" else v) for k, v in options.items()}
        measured = engine(arch, folder, device, dtype, images, side, options, settings=TURBO, serial=True)
        shown = {k: ("TAESD" if v == taesd else v) for k, v in options.items()}
        label = f"engine, one at a time, {json.dumps(shown) if shown else 'defaults'}"
        lines.append(row(label, measured, base["step_flops"], peak, images / base["wall"], denoising))
        print(f"  turbo {label} done ({measured['wall']:.1f} s; {measured['speed']})", flush=True)
    print(
        f"\nturbo ({arch}) at {side}x{side}, {steps} steps at strength {strength}, guidance 0, one image at a "
        f"time: p50 latency is submit → PNG; one UNet step = {base['step_flops'] / 1e12:.3f} TFLOP counted"
    )
    print("| path | images/s | vs plain | p50 latency (s) | peak GPU memory (GiB) | TFLOP/s | of peak | batches |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sd15,sdxl,turbo", help="comma-separated: sd15, sdxl, turbo")
    parser.add_argument("--turbo-images", type=int, default=10, help="single images for the turbo latency rows")
    parser.add_argument(
        "--turbo-variants",
        default='[{}, {"tiny_vae": "TAESD"}]',
        help='JSON list of registry option sets for the turbo rows ("TAESD": a random-weight TAESD built here)',
    )
    parser.add_argument("--jobs", type=int, default=16, help="concurrent jobs for the engine (its batch size)")
    parser.add_argument("--plain-images", type=int, default=8, help="images plain diffusers renders, one by one")
    parser.add_argument(
        "--variants",
        default='[{}, {"compile": "regional"}]',
        help="JSON list of registry option sets to run the engine with",
    )
    parser.add_argument("--dtype", default="float16", help="float16 (default) or bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense fp16/bf16 peak")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/remixbot-bench"))
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny pipelines on any device: exercises the code, measures nothing"
    )
    args = parser.parse_args()

    import torch

    from benchmarks.pipelines import build

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print(
            "benchmarks/gpu.py needs a CUDA GPU and none is visible here; nothing was measured.\n"
            "Run it on a GPU machine, or use --dry-run to check the code path on this one."
        )
        return 0
    device = "cuda" if cuda else "cpu"
    dtype = args.dtype if cuda else "float32"
    archs = [a.strip() for a in args.models.split(",") if a.strip()]
    jobs, plain_images = args.jobs, args.plain_images
    if args.dry_run:
        archs = [f"tiny-{a}" if not a.startswith("tiny-") else a for a in archs]
        jobs, plain_images = min(jobs, 4), min(plain_images, 2)
    variants = json.loads(args.variants)
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    dry = "DRY RUN (tiny pipelines: the numbers mean nothing) - " if args.dry_run else ""
    print(
        f"{dry}{name}, {dtype}, {STEPS} steps at strength {STRENGTH}, guidance {GUIDANCE}; "
        f"peak {peak or 'unknown'} TFLOP/s",
        flush=True,
    )
    if "turbo" in archs or "tiny-turbo" in archs:
        archs = [a for a in archs if a not in ("turbo", "tiny-turbo")]
        turbo_images = min(args.turbo_images, 3) if args.dry_run else args.turbo_images
        turbo(args.workdir, device, dtype, turbo_images, json.loads(args.turbo_variants), peak, args.dry_run)
    for arch in archs:
        side, reference = SIZES[arch]
        folder = build(arch, args.workdir / f"{arch}-{dtype}", dtype=dtype, device=device)
        base = plain(arch, folder, device, dtype, plain_images, side)
        flops = base["step_flops"]
        lines = [row("plain diffusers, one at a time", base, flops, peak, None)]
        print(f"  plain done ({base['wall']:.1f} s)", flush=True)
        for options in variants:
            measured = engine(arch, folder, device, dtype, jobs, side, options)
            label = f"engine, {jobs} concurrent, {json.dumps(options) if options else 'defaults'}"
            lines.append(row(label, measured, flops, peak, plain_images / base["wall"]))
            print(
                f"  {label} done ({measured['wall']:.1f} s; load+warm-up {measured['load_s']:.0f} s; "
                f"{measured['speed']})",
                flush=True,
            )
        print(
            f"\n{arch} at {side}x{side}: one guided UNet step = {flops / 1e12:.3f} TFLOP counted"
            + (f" (reference {reference})" if reference else "")
        )
        print("| path | images/s | vs plain | p50 latency (s) | peak GPU memory (GiB) | TFLOP/s | of peak | batches |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
