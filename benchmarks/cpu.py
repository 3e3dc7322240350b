"""Benchmark 2: the fast CPU path, option by option, against plain diffusers: SD-Turbo-sized img2img at 512².

    python benchmarks/cpu.py [--rounds 3] [--folder /tmp/remixbot-bench/sd21] [--no-compile]

The pipeline is SD 2.1 / SD-Turbo's architecture with random weights (benchmarks/pipelines.py),
written once to ``--folder``; the tiny autoencoder is diffusers' ``AutoencoderTiny`` with TAESD's
config (random weights: operators fetch ``madebyollin/taesd``), written beside it.

One process loads the pipeline once and renders one image per path per round, the paths taking
turns (interleaved), so that other load on a shared machine hits every path alike. Every render is
timed from the source PNG to the output PNG (the bot has to send a file). Paths:

* plain diffusers: ``StableDiffusionImg2ImgPipeline`` with its defaults, the prompt encoded by the
  text encoder on every call;
* (b) prompt-embedding cache: the text encoder's output for (prompt, negative prompt) computed once
  and passed as ``prompt_embeds`` (what a reroll or a variation reuses);
* (a) tiny VAE: ``AutoencoderTiny`` (TAESD) in place of the full VAE, for encode and decode;
* (a)+(b) both; and the same with 2 denoising steps (4 steps at 0.5) to show what (c) saves;
* (c) one-step Turbo settings are in *every* path, the baseline included: 2 steps at strength 0.5
  (steps × strength = 1, one UNet call), guidance 0 (no classifier-free guidance);
* (d) ``torch.compile`` of the UNet (inductor, CPU) on top of (a)+(b), measured in a second phase
  against (a)+(b) again, interleaved (the compiled UNet is a wrapper: the original stays usable).
  bfloat16 is only tried where the CPU has ``avx512_bf16`` or ``amx_bf16`` (said so otherwise).

Quality: mean absolute difference (0-255) of each path's round-0 output against plain diffusers'
round-0 output on the same seed, and a contact sheet (``--picture``). With random weights this
is only indicative: a trained TAESD tracks the full VAE far more closely than a random one.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
class Variant:
    label: str
    tiny_vae: bool = False
    cached_prompt: bool = False
    steps: int = STEPS
    compiled: bool = False


PLAIN = Variant("plain diffusers (defaults)")
FAST = Variant("(a)+(b) tiny VAE + prompt cache", tiny_vae=True, cached_prompt=True)
PATHS = [
    PLAIN,
    Variant("(b) prompt-embedding cache", cached_prompt=True),
    Variant("(a) tiny VAE (TAESD)", tiny_vae=True),
    FAST,
    Variant("(a)+(b), 2 denoising steps (4 x 0.5)", tiny_vae=True, cached_prompt=True, steps=4),
]
COMPILED = Variant("(a)+(b)+(d) torch.compile UNet", tiny_vae=True, cached_prompt=True, compiled=True)


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


class Renderer:
    """One loaded pipeline, its full and tiny VAEs, and a compiled UNet once asked for."""

    def __init__(self, folder: Path, tiny_folder: Path):
        import diffusers
        import torch

        self.torch = torch
        self.pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(folder))
        self.pipe.set_progress_bar_config(disable=True)
        self.full_vae = self.pipe.vae
        self.tiny_vae = diffusers.AutoencoderTiny.from_pretrained(str(tiny_folder))
        self.unet = self.pipe.unet
        self.compiled_unet: Any = None
        self.data = source_png()
        with torch.inference_mode():
            self.embeds, _ = self.pipe.encode_prompt(PROMPT, "cpu", 1, False)

    def compile(self) -> float:
        started = time.perf_counter()
        self.compiled_unet = self.torch.compile(self.unet)
        self.render(COMPILED, 999)  # compiles now
        return time.perf_counter() - started

    def render(self, path: Variant, seed: int) -> tuple[bytes, float]:
        from PIL import Image

        pipe = self.pipe
        pipe.vae = self.tiny_vae if path.tiny_vae else self.full_vae
        pipe.unet = self.compiled_unet if path.compiled else self.unet
        prompt: dict[str, Any] = {"prompt_embeds": self.embeds} if path.cached_prompt else {"prompt": PROMPT}
        began = time.perf_counter()
        source = Image.open(io.BytesIO(self.data)).convert("RGB")
        with self.torch.inference_mode():
            image = pipe(
                image=source,
                strength=STRENGTH,
                num_inference_steps=path.steps,
                guidance_scale=GUIDANCE,
                generator=self.torch.Generator().manual_seed(seed),
                **prompt,
            ).images[0]
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue(), time.perf_counter() - began


def interleave(renderer: Renderer, paths: list[Variant], rounds: int, outputs: dict[str, bytes]) -> dict[str, list]:
    """``rounds`` rounds, one image per path each; round r uses seed r. Keeps round 0's outputs."""
    times: dict[str, list] = {p.label: [] for p in paths}
    for seed in range(rounds):
        for path in paths:
            png, seconds = renderer.render(path, seed)
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


def contact_sheet(outputs: dict[str, bytes], labels: list[str], target: Path, side: int = 160) -> None:
    """Source, then each path's round-0 output, ``side`` px each, as a small JPEG."""
    from PIL import Image, ImageDraw

    tiles = [("source", source_png())] + [(label, outputs[label]) for label in labels]
    sheet = Image.new("RGB", (side * len(tiles), side + 14), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, png) in enumerate(tiles):
        with Image.open(io.BytesIO(png)) as image:
            sheet.paste(image.convert("RGB").resize((side, side)), (i * side, 14))
        draw.text((i * side + 2, 1), label.split(" ")[0] if label != "source" else "source", fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, "JPEG", quality=80)


def table(rows: list[tuple[str, list[float]]], base: float, quality: Callable[[str], str]) -> None:
    print("| path | s/image (mean) | images/s | vs plain | min-max (s) | MAD vs full VAE (0-255) |")
    print("|---|---|---|---|---|---|")
    for label, times in rows:
        mean = statistics.fmean(times)
        print(
            f"| {label} | {mean:.2f} | {1 / mean:.3f} | {base / mean:.2f}x | "
            f"{min(times):.2f}-{max(times):.2f} | {quality(label)} |"
        )


def preview_cost(calls: int = 50) -> float:
    """Milliseconds for one latent preview (projection + 256 px JPEG) of a 512² image's latents."""
    import torch

    from engine.preview import LatentPreview

    previews = LatentPreview(interval=0.0)
    latents = torch.randn(1, 4, SIDE // 8, SIDE // 8)
    previews(latents)
    started = time.perf_counter()
    for _ in range(calls):
        previews(latents)
    return (time.perf_counter() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed images per path (one per round)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/remixbot-bench/sd21"))
    parser.add_argument("--architecture", default="sd21", help="tiny-sd15 for a quick check of the code path")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile phase")
    parser.add_argument("--picture", type=Path, default=ROOT / "docs" / "cpu-fast-path.jpg")
    args = parser.parse_args()

    import torch

    from benchmarks.pipelines import build, build_tiny_vae

    started = time.perf_counter()
    build(args.architecture, args.folder)
    tiny_folder = build_tiny_vae(args.folder.parent / "taesd")
    print(
        f"SD-Turbo-sized img2img, {SIDE}x{SIDE}, {STEPS} steps at strength {STRENGTH} unless said, guidance "
        f"{GUIDANCE}; {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    renderer = Renderer(args.folder, tiny_folder)
    for path in (PLAIN, FAST):  # untimed warm-up of every component (oneDNN builds its kernels on first use)
        renderer.render(path, 1000)
    outputs: dict[str, bytes] = {}
    times = interleave(renderer, PATHS, args.rounds, outputs)
    base = statistics.fmean(times[PLAIN.label])
    cost = preview_cost()

    def quality(label: str) -> str:
        return f"{mad(outputs[label], outputs[PLAIN.label]):.1f}"

    print()
    table([(p.label, times[p.label]) for p in PATHS], base, quality)

    step = statistics.fmean(times[PATHS[-1].label]) - statistics.fmean(times[FAST.label])
    print(
        f"\nlatent preview (engine/preview.py, 256 px JPEG): {cost:.2f} ms per preview, "
        f"{100 * cost / 1000 / step:.3f}% of one UNet step ({step:.2f} s: the 2-step row minus the 1-step one)"
    )
    if cpu_has_bf16():
        print("\nbfloat16: this CPU has avx512_bf16/amx_bf16 (try cpu_dtype = 'bfloat16'; not in this run)")
    else:
        print("\nbfloat16: skipped, this CPU has neither avx512_bf16 nor amx_bf16 (emulated bf16 is slower)")

    if not args.no_compile:
        seconds = renderer.compile()
        print(f"\ntorch.compile (inductor) of the UNet: {seconds:.0f} s to compile and render the first image")
        phase = interleave(renderer, [FAST, COMPILED], args.rounds, outputs)
        print("\nphase 2, interleaved (plain's mean from phase 1 as the base):")
        table([(f"{label} (phase 2)", t) for label, t in phase.items()], base, lambda label: quality(label[:-10]))

    contact_sheet(outputs, [label for label in outputs if label in {p.label for p in PATHS}], args.picture)
    print(f"\npicture: {args.picture}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
