"""Jobs and registries for the engine tests: the tiny random-weight pipeline next to the classic kind."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bot.jobs import Action, Job, Origin, Request, Result, new_job_id
from bot.models import ModelEntry, Models, parse_models
from tests.fixtures import IMAGES  # noqa: E402

ALICE = Origin(platform="console", user_id="alice")
SIDE = 64  # the tiny entries' working size: coffee.png and rocket.jpg both fit to 64x40


def tiny_models(folder: Path, names: tuple[str, ...] = ("tiny-a", "tiny-b")) -> Models:
    """A registry with the classic kind and tiny diffusers entries (one folder, loaded once per name)."""
    text = "".join(
        f"""
[models.{name}]
kind = "diffusers-img2img"
source = "{folder}"
strength = 0.6
num_inference_steps = 5
guidance_scale = 5.0
size = {SIDE}
"""
        for name in names
    )
    return parse_models(text)


def photo(name: str = "coffee.png") -> bytes:
    with Image.open(IMAGES / name) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
        return buffer.getvalue()


def make_job(
    entry: ModelEntry,
    prompt: str = "a watercolor cup",
    *,
    seed: int = 1,
    n: int = 1,
    image: str = "coffee.png",
    **request,
) -> Job:
    fields = dict(prompt=prompt, model=entry.name, strength=entry.strength, seed=seed, num_images_per_prompt=n)
    fields.update(request)
    return Job(
        id=new_job_id(),
        action=Action.remix,
        request=Request(**fields),
        image=photo(image),
        origin=ALICE,
        group=entry.queue_group,
    )


class Run:
    """One engine.run with its progress and cancel flag in view."""

    def __init__(self, engine, job: Job, on_step: Callable[[Run, int, int], None] | None = None):
        self.job = job
        self.cancel = threading.Event()
        self.steps: list[tuple[int, int]] = []
        self.previews: list[tuple[int, int, bytes]] = []  # (step, total, JPEG) as the engine sent them
        self._on_step = on_step
        self.stepped = asyncio.Event()
        self.task = asyncio.ensure_future(engine.run(job, self.progress, self.cancel))

    def progress(self, step: int, total: int, preview: bytes = b"") -> None:
        if preview:  # a preview rides on a step already reported
            self.previews.append((step, total, preview))
            return
        self.steps.append((step, total))
        if step >= 1:
            self.stepped.set()
        if self._on_step is not None:
            self._on_step(self, step, total)

    async def result(self, timeout: float = 60) -> Result:
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)


def pixels(result: Result) -> list[np.ndarray]:
    """Every output of a result as int arrays (H, W, 3)."""
    return [np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB")).astype(int) for output in result.outputs]


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait for ``condition`` to hold (checked every few milliseconds), or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.005)
