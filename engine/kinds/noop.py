"""The ``noop`` model kind: hands the source back unchanged, optionally after a wait. No weights, no torch.

For measuring the queue rather than a model (benchmarks/queue.py), and for jobs that must take a
known time (tests of timeouts and of workers dying mid-job). Options in models.toml:

    seconds = 0.0   # how long a job takes in all, spread over its steps
    steps = 1       # progress steps; a cancelled job stops at the next one

Run it with ``REMIXBOT_DEVICE=cpu`` (or any device): it never touches one.
"""

from __future__ import annotations

import time

from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.work import Kind, Work

LABEL = "noop"


class Noop:
    label = LABEL
    nbytes = 0

    def __init__(self, seconds: float, steps: int):
        self.seconds = seconds
        self.steps = max(1, steps)

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        for step in range(self.steps):
            progress(step, self.steps)
            if self.seconds:
                time.sleep(self.seconds / self.steps)
        progress(self.steps, self.steps)
        return [work.image.copy() for _ in work.seeds]


def check(entry: ModelEntry) -> str | None:
    return None


def load(entry: ModelEntry, device: str) -> Noop:
    return Noop(float(entry.options.get("seconds", 0.0)), int(entry.options.get("steps", 1)))


# no torch: the runner never picks (or imports torch to pick) a device for it
KIND = Kind(check=check, load=load, device="cpu")
