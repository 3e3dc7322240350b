"""Benchmark 5: the shipped registry's diffusion entries, from their real hub layouts, on a CUDA GPU.

    python benchmarks/gpu_layouts.py              # a CUDA machine, offline: about 3 minutes (budget 8)
    python benchmarks/gpu_layouts.py --dry-run    # any CPU, float32, no compile: checks the code path

Every hub repository config/models.toml names is written by ``tests/engine/tiny_layouts.py`` into a
Hugging Face cache under its real id (the real ``model_index.json``, component folders, scheduler
configs, SDXL's stock VAE and the fp16-fix VAE, SVD's fp16 variant files, the IP-Adapter folders),
with tiny random weights, and ``HF_HUB_OFFLINE=1``. The entries are read from config/models.toml
unchanged and served by ``engine.runner.Engine`` on the GPU as the bot's workers serve them: the
registry's dtype (float16 unless the entry says bfloat16), batching of concurrent jobs, and
``compile = "regional"`` for the img2img entries. So it answers "does the engine's GPU path work on
the layouts users will bring", not "how fast are real weights" (``benchmarks/gpu.py`` measures that).

Per entry and variant: load seconds, the first job's seconds (cuDNN autotuning, compile warm-up),
then ``--jobs`` concurrent jobs: images/s, p50 latency, the batches they ran in, peak GPU memory, and
the outputs' check (done, not blank). "SDXL stock VAE" runs realism without its ``vae`` line: the
VAE that diffusers upcasts to float32. Exits 1 when an entry fails. Without imageio-ffmpeg (the
packed wheels leave it out) video entries render GIFs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.util
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
os.environ["HF_HUB_OFFLINE"] = "1"  # before anything from Hugging Face is imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

PHOTO = ROOT / "tests" / "fixtures" / "images" / "coffee.png"
REFERENCE = ROOT / "tests" / "fixtures" / "images" / "rocket.jpg"
# what each kind's job asks for: the action, request fields, whether jobs batch
KIND_JOBS: dict[str, tuple[str, dict[str, Any]]] = {
    "diffusers-img2img": ("remix", {"size": 64, "num_inference_steps": 4}),
    "instruct-pix2pix": ("remix", {"size": 64, "num_inference_steps": 4}),
    "flux-kontext": ("remix", {"num_inference_steps": 2}),
    "image-to-video": ("animate", {"size": 64, "num_inference_steps": 2, "num_frames": 5}),
}


@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    name: str  # the registry entry
    options: dict[str, Any]  # on top of the entry's own (None values delete the option)


def cases(models: Any, names: list[str], compile_img2img: bool) -> list[Case]:
    found = []
    for name in names:
        entry = models.entries[name]
        found.append(Case(name, name, {}))
        if name == "realism":
            found.append(Case("realism, SDXL stock VAE (upcast)", name, {"vae": None}))
        if entry.kind == "diffusers-img2img" and compile_img2img:
            found.append(Case(f"{name}, compile regional", name, {"compile": "regional", "compile_sizes": [64]}))
    return found


def png(path: Path, side: int) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def entry_for(models: Any, case: Case) -> Any:
    entry = models.entries[case.name]
    options = {**entry.options, **case.options}
    options = {key: value for key, value in options.items() if value is not None}
    if entry.kind == "image-to-video" and importlib.util.find_spec("imageio_ffmpeg") is None:
        options["clip_format"] = "gif"
    return dataclasses.replace(entry, options=options)


def measure(models: Any, case: Case, device: str, jobs: int) -> dict[str, Any]:
    import torch

    from bot.jobs import Action, Job, Origin, Request, Status
    from bot.models import Models
    from engine.runner import Engine

    entry = entry_for(models, case)
    action, fields = KIND_JOBS[entry.kind]
    registry = Models(entries={entry.name: entry}, defaults={})
    runner = Engine(registry, device, batch_size=jobs, batch_window=0.05)
    source = png(PHOTO, 96)
    references = (png(REFERENCE, 96),) if entry.options.get("ip_adapter") else ()
    problems: list[str] = []

    def job(seed: int) -> Job:
        request = Request(prompt="a cup of coffee, watercolor", model=entry.name, strength=entry.strength, seed=seed)
        request = dataclasses.replace(request, **fields)
        return Job(
            id=f"{entry.name}-{seed}",
            action=Action(action),
            request=request,
            image=source,
            origin=Origin("bench", "gpu"),
            group=entry.queue_group,
            references=references if seed % 2 else (),  # half with reference images (they run alone)
        )

    async def one(seed: int) -> float:
        began = time.perf_counter()
        result = await runner.run(job(seed), lambda step, total, preview=b"": None, threading.Event())
        if result.status is not Status.done:
            problems.append(result.error or str(result.status))
        elif not result.outputs or min(len(output.data) for output in result.outputs) < 100:
            problems.append("no output")
        return time.perf_counter() - began

    async def main() -> dict[str, Any]:
        began = time.perf_counter()
        await asyncio.to_thread(runner.load, entry)
        loaded = time.perf_counter() - began
        first = await one(10_000)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(seed) for seed in range(jobs)))
        wall = time.perf_counter() - started
        return {"load": loaded, "first": first, "wall": wall, "latencies": list(latencies)}

    try:
        measured = asyncio.run(main())
        model = runner.residency.peek(entry.name)
        pipe = getattr(model, "pipe", None)
        measured.update(
            dtype=str(getattr(pipe, "dtype", "?")).removeprefix("torch."),
            batches=dict(runner.batches),
            memory=torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
            problems=problems,
            vae=_vae_note(pipe),
        )
    except Exception as error:  # noqa: BLE001 - a row that says what broke, and the next entry
        measured = {"error": f"{type(error).__name__}: {error}"}
    finally:
        runner.close()
        runner = None  # type: ignore[assignment]
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return measured


def _vae_note(pipe: Any) -> str:
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae.config, "force_upcast"):
        return ""
    return "upcast" if vae.config.force_upcast and vae.dtype.itemsize == 2 else str(vae.dtype).removeprefix("torch.")


def row(case: Case, jobs: int, measured: dict[str, Any]) -> str:
    if "error" in measured:
        return f"| {case.label} | FAILED: {measured['error'][:160]} | | | | | | | |"
    images = jobs / measured["wall"]
    batches = ", ".join(f"{n}×{size}" for size, n in sorted(measured["batches"].items())) or "-"
    memory = "-" if measured["memory"] is None else f"{measured['memory']:.2f}"
    status = "ok" if not measured["problems"] else f"FAILED {len(measured['problems'])}: {measured['problems'][0]}"
    return (
        f"| {case.label} | {measured['dtype']} | {measured['vae'] or '-'} | {measured['load']:.1f} | "
        f"{measured['first']:.1f} | {images:.2f} | {statistics.median(measured['latencies']):.2f} | {batches} | "
        f"{memory} | {status} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="", help="registry entries, comma-separated (default: every hub one)")
    parser.add_argument("--jobs", type=int, default=8, help="concurrent jobs per entry (the batch size)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compile = regional rows")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later rows are skipped past it")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/remixbot-layouts"))
    parser.add_argument("--dry-run", action="store_true", help="on any device: float32 on a CPU, 2 jobs, no compile")
    args = parser.parse_args()
    started = time.perf_counter()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print(
            "benchmarks/gpu_layouts.py needs a CUDA GPU and none is visible here; nothing was run.\n"
            "Run it on a GPU machine, or use --dry-run to check the code path on this one."
        )
        return 0
    device = "cuda" if cuda else "cpu"
    jobs = min(args.jobs, 2) if args.dry_run else args.jobs
    if not cuda:
        torch.set_num_threads(1)  # tiny models: a second thread only contends

    from bot.models import load_models
    from engine import registry
    from tests.engine.tiny_layouts import REPOS, SD15, build_hub

    models = load_models(ROOT / "config" / "models.toml", weights=args.workdir / "weights")
    wanted = [name.strip() for name in args.entries.split(",") if name.strip()]
    names = wanted or [name for name, entry in models.entries.items() if entry.kind in KIND_JOBS]
    hub = args.workdir / "hub"
    for repo in REPOS:  # the repositories these entries name, each built once into the cache
        entries = [models.entries[name] for name in names]
        named = {e.source for e in entries} | {str(e.options.get(k)) for e in entries for k in ("ip_adapter", "vae")}
        built = hub / f".built-{repo.replace('/', '--')}"
        if (repo in named or (repo == SD15 and "h94/IP-Adapter" in named)) and not built.is_file():
            build_hub(hub, (repo,))
            built.write_text("tests/engine/tiny_layouts.py\n")
    os.environ["HF_HUB_CACHE"] = str(hub)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    dry = "DRY RUN (CPU, float32: checks the code path) - " if args.dry_run else ""
    print(f"{dry}{name}; layouts built in {time.perf_counter() - started:.0f} s; {jobs} concurrent jobs", flush=True)

    lines, failed = [], False
    for case in cases(models, names, compile_img2img=cuda and not args.no_compile and not args.dry_run):
        reason = registry.check(entry_for(models, case))
        if reason:
            lines.append(f"| {case.label} | not run: {reason} | | | | | | | |")
            failed = failed or not reason.startswith("needs ftfy")
            print(f"  {case.label}: {reason}", flush=True)
            continue
        if time.perf_counter() - started > args.budget:
            lines.append(f"| {case.label} | skipped: past the {args.budget:.0f} s budget | | | | | | | |")
            continue
        measured = measure(models, case, device, jobs)
        failed = failed or "error" in measured or bool(measured.get("problems"))
        lines.append(row(case, jobs, measured))
        print(f"  {case.label} done ({time.perf_counter() - started:.0f} s)", flush=True)

    print(
        "\n| entry | dtype | VAE | load (s) | first job (s) | images/s | p50 latency (s) | batches | "
        "peak GPU memory (GiB) | outputs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
