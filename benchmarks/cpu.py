"""Benchmark 2: the engine's fast CPU path, option by option, against plain diffusers: SD-Turbo-sized img2img at 512².

    nice -n 5 python benchmarks/cpu.py [--rounds 2] [--folder /tmp/remixbot-bench/sd21] [--no-bf16]

The pipeline is SD 2.1 / SD-Turbo's architecture with random weights (benchmarks/pipelines.py),
written once to ``--folder``; the tiny autoencoder is diffusers' ``AutoencoderTiny`` with TAESD's
config (random weights: operators fetch ``madebyollin/taesd``), written beside it.

One process loads the pipeline once. Plain diffusers is ``StableDiffusionImg2ImgPipeline`` as
``from_pretrained`` gives it; every engine path is the engine's own ``Img2ImgModel`` made by
``engine.kinds.img2img.prepare`` from a registry entry with the path's options, on the same weights
(shared modules: one copy in memory; the entry's ``tiny_vae`` loads TAESD through
``engine.kinds.sources`` as in production). Each round renders one image per path, the paths taking
turns (interleaved), so that other load on the shared machine hits every path alike; every render
is timed from the source PNG to the output PNG (the bot sends a file). Paths:

* plain diffusers: its defaults, the prompt encoded by the text encoder on every call, full VAE;
* engine, defaults: ``prompt_cache = 0``, full VAE (what the engine cost before this change);
* engine + ``prompt_cache``: a reroll/variation (the prompt was encoded once before the timed rounds);
* engine + ``tiny_vae``: TAESD for encode and decode, the prompt encoded every time;
* engine + ``cpu_dtype = "bfloat16"`` (only where the CPU has avx512_bf16/amx_bf16: oneDNN's AMX),
  which makes the UNet and VAE NHWC (``channels_last``) by default;
* engine + ``tiny_vae`` + ``prompt_cache``; and all three together (the bfloat16 paths share one
  bfloat16 copy of the weights, so both are NHWC);
* ``--engine-defaults`` adds the engine without these options (``prompt_cache = 0``, full VAE):
  the same pipeline call as plain diffusers (BENCHMARKS.md measured it within the noise of plain);
* one-step Turbo settings are in *every* path, the baseline included: 2 steps at strength 0.5
  (steps × strength = 1 UNet call), guidance 0 (no classifier-free guidance);
* previews: the fastest path at 4 steps × 0.5 (2 UNet calls, so one preview: none is drawn at the
  last step), with and without a preview sink, to measure what a preview costs a job.

Quality: mean absolute difference (0-255) of each path's round-0 output against plain diffusers'
round-0 output on the same seed, and a contact sheet (``--picture``). With random weights this is
only indicative: a trained TAESD tracks the full VAE far more closely than a random one.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path: put the repository root there instead.
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCE = ROOT / "tests" / "fixtures" / "images" / "astronaut.png"  # 512x512
PROMPT = "an astronaut riding a horse, watercolor"
STEPS, STRENGTH, GUIDANCE, SIDE = 2, 0.5, 0.0, 512


@dataclass(frozen=True)
class Case:
    label: str
    options: dict[str, Any] = field(default_factory=dict)  # the registry entry's options (None: plain diffusers)
    plain: bool = False
    steps: int = STEPS
    previews: bool = False  # the work has a preview sink (as every job run by the engine has)
    bf16: bool = False


PLAIN = Case("plain diffusers (defaults)", plain=True)
NO_CACHE = {"prompt_cache": 0}


def paths(taesd: str, bf16: bool, engine_defaults: bool) -> list[Case]:
    tiny = {"tiny_vae": taesd}
    found = [PLAIN]
    if engine_defaults:
        found.append(Case("engine, defaults (full VAE, no prompt cache)", NO_CACHE))
    found += [
        Case("engine + prompt_cache (reroll/vary)", {}),
        Case("engine + tiny_vae", {**tiny, **NO_CACHE}),
    ]
    if bf16:
        found.append(Case("engine + bfloat16 (NHWC)", {**NO_CACHE, "cpu_dtype": "bfloat16"}, bf16=True))
    found.append(Case("engine + tiny_vae + prompt_cache", tiny))
    if bf16:
        found.append(
            Case("engine + tiny_vae + prompt_cache + bfloat16 (NHWC)", {**tiny, "cpu_dtype": "bfloat16"}, bf16=True)
        )
    best = found[-1]
    found += [
        replace(best, label=f"{best.label.removeprefix('engine + ')}, 2 UNet steps, no preview", steps=4),
        replace(
            best, label=f"{best.label.removeprefix('engine + ')}, 2 UNet steps, preview (TAESD)", steps=4, previews=True
        ),
    ]
    return found


def source_png() -> bytes:
    from PIL import Image

    with Image.open(SOURCE) as image:
        buffer = io.BytesIO()
        image.convert("RGB").resize((SIDE, SIDE)).save(buffer, "PNG")
        return buffer.getvalue()


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Bench:
    """Plain diffusers and one engine model per path, all on one copy of the weights (bf16: one more)."""

    def __init__(self, folder: Path, path_list: list[Case]):
        import diffusers
        import torch

        from benchmarks.pipelines import registry_entry
        from engine.kinds import img2img

        self.torch = torch
        self.plain = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(folder))
        self.plain.set_progress_bar_config(disable=True)
        self.data = source_png()
        self.models: dict[str, Any] = {}
        self.previews: dict[str, int] = {}
        shared = {k: v for k, v in self.plain.components.items() if k != "scheduler"}
        bf16_parts: dict[str, Any] = {}
        for path in path_list:
            if path.plain:
                continue
            parts = dict(shared)
            if path.bf16:
                if not bf16_parts:  # a bfloat16 copy of the weights (cpu_dtype = "bfloat16" loads them so)
                    bf16_parts = {
                        name: copy.deepcopy(parts[name]).to(torch.bfloat16) for name in ("unet", "text_encoder", "vae")
                    }
                parts.update(bf16_parts)
            scheduler = type(self.plain.scheduler).from_config(self.plain.scheduler.config)
            pipe = diffusers.StableDiffusionImg2ImgPipeline(**parts, scheduler=scheduler, requires_safety_checker=False)
            entry = registry_entry(
                "bench",
                folder,
                strength=STRENGTH,
                num_inference_steps=path.steps,
                guidance_scale=GUIDANCE,
                size=SIDE,
                options=dict(path.options),
            )
            self.models[path.label] = (img2img.prepare(pipe, entry, "cpu"), entry)

    def prime(self, path: Case) -> None:
        """Encode the prompt once into the path's cache: the timed renders are rerolls."""
        if path.plain:
            return
        from engine.kinds import prompts

        model, _ = self.models[path.label]
        with self.torch.inference_mode():
            prompts.call_kwargs(model.pipe, [PROMPT], [""], model.prompt_cache, (model.name, model.loras.active))

    def render(self, path: Case, seed: int) -> tuple[bytes, float]:
        from PIL import Image

        from bot import images

        began = time.perf_counter()
        source = Image.open(io.BytesIO(self.data)).convert("RGB")
        if path.plain:
            with self.torch.inference_mode():
                image = self.plain(
                    prompt=PROMPT,
                    image=source,
                    strength=STRENGTH,
                    num_inference_steps=path.steps,
                    guidance_scale=GUIDANCE,
                    generator=self.torch.Generator().manual_seed(seed),
                ).images[0]
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            return buffer.getvalue(), time.perf_counter() - began
        from bot.jobs import Action, Request
        from engine.work import Work

        model, entry = self.models[path.label]
        request = Request(prompt=PROMPT, model=entry.name, strength=STRENGTH, seed=seed)

        def show(step: int, total: int, jpeg: bytes) -> None:
            self.previews[path.label] = self.previews.get(path.label, 0) + 1

        work = Work(
            action=Action.reroll,
            request=request,
            entry=entry,
            image=images.fit(source, SIDE, entry.multiple),
            references=(),
            seeds=(seed,),
            device="cpu",
            preview=show if path.previews else None,
        )
        [image] = model.run(work, lambda step, total: None)
        return images.encode_png(image), time.perf_counter() - began


def interleave(bench: Bench, path_list: list[Case], rounds: int, outputs: dict[str, bytes]) -> dict[str, list]:
    """``rounds`` rounds, one image per path each; round r uses seed r. Keeps round 0's outputs."""
    times: dict[str, list] = {p.label: [] for p in path_list}
    for seed in range(rounds):
        for path in path_list:
            png, seconds = bench.render(path, seed)
            times[path.label].append(seconds)
            if seed == 0:
                outputs.setdefault(path.label, png)
            print(f"  round {seed} {path.label}: {seconds:.2f} s (load avg {os.getloadavg()[0]:.1f})", flush=True)
    return times


def mad(a: bytes, b: bytes) -> float:
    import numpy as np
    from PIL import Image

    first, second = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), dtype=np.float32) for x in (a, b))
    return float(np.abs(first - second).mean())


def contact_sheet(outputs: dict[str, bytes], labels: list[str], target: Path, side: int = 128) -> None:
    """Source, then each path's round-0 output, ``side`` px each, as a small JPEG with numbered tiles."""
    from PIL import Image, ImageDraw

    tiles = [("source", source_png())] + [(str(i + 1), outputs[label]) for i, label in enumerate(labels)]
    sheet = Image.new("RGB", (side * len(tiles), side + 14), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, png) in enumerate(tiles):
        with Image.open(io.BytesIO(png)) as image:
            sheet.paste(image.convert("RGB").resize((side, side)), (i * side, 14))
        draw.text((i * side + 2, 1), label, fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, "JPEG", quality=75)


def preview_costs(bench: Bench, calls: int = 10) -> dict[str, float]:
    """Milliseconds per preview (render + 256 px JPEG) of a 512² image's latents: projection and TAESD."""
    import torch

    from engine import preview

    latents = torch.randn(1, 4, SIDE // 8, SIDE // 8)
    renderers = {"linear projection": preview.LatentPreview(interval=0.0, share=0.0)}
    for model, _ in bench.models.values():
        if model.tiny_vae and f"TAESD {model.pipe.vae.dtype}" not in renderers:
            decoder = lambda latents, side, vae=model.pipe.vae: preview.tiny_vae_rgb(vae, latents, side)  # noqa: E731
            renderers[f"TAESD {model.pipe.vae.dtype}"] = preview.LatentPreview(interval=0.0, decoder=decoder, share=0.0)
    costs = {}
    for name, render in renderers.items():
        render(latents)
        started = time.perf_counter()
        for _ in range(calls):
            render(latents)
        costs[name] = (time.perf_counter() - started) / calls * 1000
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed images per path (one per round)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/remixbot-bench/sd21"))
    parser.add_argument("--architecture", default="sd21", help="tiny-sd15 for a quick check of the code path")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 paths even where the CPU has them")
    parser.add_argument("--engine-defaults", action="store_true", help="add the engine without its options (≈ plain)")
    parser.add_argument("--picture", type=Path, default=ROOT / "docs" / "cpu-options.jpg")
    args = parser.parse_args()

    import torch

    from benchmarks.pipelines import build, build_tiny_vae

    started = time.perf_counter()
    load_before = os.getloadavg()
    build(args.architecture, args.folder)
    taesd = build_tiny_vae(args.folder.parent / "taesd")
    bf16 = cpu_has_bf16() and not args.no_bf16
    path_list = paths(str(taesd), bf16, args.engine_defaults)
    print(
        f"SD-Turbo-sized img2img ({args.architecture}), {SIDE}x{SIDE}, {STEPS} steps at strength {STRENGTH} unless "
        f"said, guidance {GUIDANCE}; {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} threads {torch.get_num_threads()}; load avg {load_before[0]:.1f} / "
        f"{load_before[1]:.1f} / {load_before[2]:.1f}",
        flush=True,
    )
    bench = Bench(args.folder, path_list)
    # untimed: oneDNN builds its kernels on first use (one render per set of kernels); the caches get the prompt
    tiny = next(p for p in path_list if "tiny_vae" in p.options and not p.bf16)
    full_bf16 = [p for p in path_list if p.bf16 and "tiny_vae" not in p.options]
    for path in [PLAIN, tiny, *full_bf16] + [p for p in path_list if p.previews]:
        bench.render(path, 1000)
    for path in path_list:
        if path.options.get("prompt_cache", 1):
            bench.prime(path)
    print(f"loaded and warmed up in {time.perf_counter() - started:.0f} s", flush=True)
    outputs: dict[str, bytes] = {}
    times = interleave(bench, path_list, args.rounds, outputs)
    costs = preview_costs(bench)
    load_after = os.getloadavg()

    base = statistics.fmean(times[PLAIN.label])
    print()
    print("| # | path | s/image (mean) | images/s | vs plain | min-max (s) | MAD vs plain (0-255) |")
    print("|---|---|---|---|---|---|---|")
    for i, path in enumerate(path_list, start=1):
        t = times[path.label]
        mean = statistics.fmean(t)
        print(
            f"| {i} | {path.label} | {mean:.2f} | {1 / mean:.3f} | {base / mean:.2f}x | {min(t):.2f}-{max(t):.2f} | "
            f"{mad(outputs[path.label], outputs[PLAIN.label]):.1f} |"
        )
    without, with_ = (statistics.fmean(times[p.label]) for p in path_list[-2:])
    shown = bench.previews.get(path_list[-1].label, 0)
    print(
        f"\npreviews: {shown} drawn over {len(times[path_list[-1].label]) + 1} renders; job time with "
        f"{with_:.2f} s vs without {without:.2f} s: {100 * (with_ - without) / without:+.1f}%"
    )
    for name, ms in costs.items():
        print(f"one preview, {name}: {ms:.1f} ms (256 px JPEG)")
    contact_sheet(outputs, [p.label for p in path_list], args.picture)
    print(
        f"\npicture: {args.picture}; total {time.perf_counter() - started:.0f} s; load avg after "
        f"{load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f}"
    )


if __name__ == "__main__":
    main()
