"""Benchmark 4 — memory: the bot process (`remixbot run` in Redis mode) with both adapters loaded.

    python benchmarks/memory.py [--redis redis://127.0.0.1:6379/13]

A fresh process builds the service as `remixbot run` does with REDIS_URL set (SQLite history,
ArqQueue; the engine and torch stay out of it), serves Prometheus metrics, and imports every module
of adapters.telegram and adapters.discord (with python-telegram-bot and discord.py). Its resident
memory (RSS, read by psutil from outside) is compared with a bare ``python -c "import asyncio"``.
Goal: at most 150 MB.
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 150

BARE = "import asyncio, sys\nprint('{}', flush=True)\nsys.stdin.read()\n"

BOT = """
import asyncio, importlib, json, pkgutil, socket, sys
from dataclasses import replace

from adapters.cli import build_service, close_service
from bot import metrics
from bot.settings import load_settings


def import_adapters():
    loaded, missing = [], []
    for package in ("adapters.telegram", "adapters.discord"):
        try:
            module = importlib.import_module(package)
        except ImportError as error:
            missing.append(f"{package} ({error.name})")
            continue
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            try:
                importlib.import_module(info.name)
                loaded.append(info.name)
            except ImportError as error:
                missing.append(f"{info.name} ({error.name})")
    return loaded, missing


async def main():
    settings = replace(load_settings({}), redis_url=sys.argv[1], data_dir=sys.argv[2])
    service = await build_service(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port, "127.0.0.1")
    loaded, missing = import_adapters()
    heavy = sorted(name for name in ("torch", "diffusers", "transformers", "engine.runner")
                   if name in sys.modules)
    print(json.dumps({"loaded": loaded, "missing": missing, "heavy": heavy}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await close_service(service)


asyncio.run(main())
"""


def rss_of(code: str, *args: str) -> tuple[int, dict]:
    """Start ``python -c code``, wait for its line on stdout, read its RSS, let it go."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        report = json.loads(process.stdout.readline())
        time.sleep(0.5)  # let lazy allocations settle
        return psutil.Process(process.pid).memory_info().rss, report
    finally:
        process.stdin.close()
        process.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("REMIXBOT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args(argv)
    bare, _ = rss_of(BARE)
    with tempfile.TemporaryDirectory() as data_dir:
        bot, report = rss_of(BOT, args.redis, data_dir)
    mb = 1024 * 1024
    print(
        f"Python {sys.version.split()[0]}; adapters imported: {len(report['loaded'])} modules"
        + (f"; missing: {', '.join(report['missing'])}" if report["missing"] else "")
    )
    print(f"torch-family modules in the bot: {', '.join(report['heavy']) or 'none'}\n")
    print("| process | RSS |")
    print("|---|---|")
    print(f'| bare `python -c "import asyncio"` | {bare / mb:.1f} MB |')
    print(f"| bot: service (Redis mode) + metrics + Telegram and Discord adapters | {bot / mb:.1f} MB |")
    print(f"| difference | {(bot - bare) / mb:.1f} MB |")
    verdict = "within" if bot / mb <= GOAL_MB else "OVER"
    print(f"\n{verdict} the {GOAL_MB} MB goal")
    return 0 if bot / mb <= GOAL_MB and not report["heavy"] else 1


if __name__ == "__main__":
    sys.exit(main())
