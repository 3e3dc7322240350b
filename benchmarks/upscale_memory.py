"""Peak memory and time of an upscale, tiled and untiled, on the CPU.

    python benchmarks/upscale_memory.py                 # 1024² ×4 with a small random Real-ESRGAN Compact
    python benchmarks/upscale_memory.py --model weights/RealESRGAN_x4plus.pth --size 512

Each measurement runs in a fresh process: the model is loaded and warmed up on a small image, then
the peak resident set size is reset (``/proc/self/clear_refs``) and the upscale kind's ``run`` does
the whole job (tiles, Lanczos to the asked factor, the PIL image the runner encodes). The figure is
the peak RSS over the RSS before the run: what one upscale adds to a worker. Linux only.

The third row runs with ``MALLOC_MMAP_THRESHOLD_=1048576``: glibc otherwise raises its mmap threshold
after the first big frees and keeps the freed tile buffers in its heap, which shows up as RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"tiled": (512, 32), "untiled": (4096, 0)}  # (tile, overlap): 4096 holds the whole source
MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "1048576"}  # 1 MiB: big buffers go back to the system when freed
ROWS = (("tiled", {}), ("tiled", MMAP_THRESHOLD), ("untiled", {}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(model: Path, mode: str, size: int, scale: int) -> dict:
    """One upscale of a size × size image in this process: peak RSS added (MiB) and seconds."""
    import numpy as np
    import torch
    from PIL import Image

    from bot.jobs import Action, Request
    from bot.models import ModelEntry
    from engine.kinds import upscale
    from engine.work import Work

    torch.manual_seed(0)
    tile, overlap = MODES[mode]
    entry = ModelEntry(
        name="bench",
        kind="upscale-spandrel",
        source=str(model),
        options={"tile": tile, "overlap": overlap, "max_side": 65536},
    )
    loaded = upscale.load(entry, "cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))

    def work(picture: Image.Image) -> Work:
        request = Request(prompt="", model="bench", strength=0.5, scale=scale)
        return Work(
            action=Action.upscale, request=request, entry=entry, image=picture, references=(), seeds=(0,), device="cpu"
        )

    loaded.run(work(image.resize((64, 64))), lambda step, total: None)  # warm-up: kernels, allocator
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    started = time.perf_counter()
    [out] = loaded.run(work(image), lambda step, total: None)
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return {
        "mode": mode,
        "size": size,
        "scale": scale,
        "output": f"{out.width}x{out.height}",
        "peak_mib": round((peak - before) / 1024, 1),
        "seconds": round(seconds, 2),
        "threads": torch.get_num_threads(),
    }


def run_child(model: Path, mode: str, size: int, scale: int, env: dict[str, str] | None = None) -> dict:
    """``measure`` in a fresh Python process (so one measurement's memory never counts for another)."""
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--model",
        str(model),
        "--size",
        str(size),
        "--scale",
        str(scale),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    settings = " ".join(f"{key}={value}" for key, value in (env or {}).items())
    return dict(json.loads(done.stdout.strip().splitlines()[-1]), env=settings)


def build_model(folder: Path) -> Path:
    from tests.engine.tiny_spandrel import build_compact

    return build_compact(folder / "compact-x4.pth", scale=4, num_feat=16, num_conv=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a spandrel SR weights file (default: a random Compact)")
    parser.add_argument("--size", type=int, default=1024, help="side of the square source image, px")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child, args.size, args.scale)))
        return
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or build_model(Path(folder))
        rows = [run_child(model, mode, args.size, args.scale, env) for mode, env in ROWS]
    print(
        f"upscale {args.size}x{args.size} ×{args.scale} on the CPU ({rows[0]['threads']} threads), "
        f"model {args.model.name if args.model else 'random Compact 16nf 4nc'}"
    )
    print(f"{'mode':<8} {'tile/overlap':>12} {'output':>10} {'peak RSS +MiB':>14} {'seconds':>8}  env")
    for row in rows:
        tile, overlap = MODES[row["mode"]]
        shape = f"{tile}/{overlap}" if row["mode"] == "tiled" else "whole"
        print(
            f"{row['mode']:<8} {shape:>12} {row['output']:>10} {row['peak_mib']:>14} {row['seconds']:>8}  {row['env']}"
        )


if __name__ == "__main__":
    main()
