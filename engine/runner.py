"""The engine: runs a job on the model its request names, on one thread per model group.

A model group (``gpu``, ``classic``, …) owns one thread, so the device is only ever used by one
job at a time and the event loop never blocks. Loaded models stay resident. Every failure becomes
a ``Result`` with a user-safe message; details go to the log with the job id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import threading
import time

from PIL import Image

from bot import images
from bot.jobs import Action, Job, JobCancelled, Output, Progress, Result, Status
from bot.models import ModelEntry, Models
from engine import registry
from engine.work import Clip, Model, UserFacingError, Work

log = logging.getLogger(__name__)

# Actions that re-render the source at the model's working size (img2img-like).
RENDER_ACTIONS = (Action.remix, Action.reroll, Action.vary)


class Engine:
    def __init__(self, models: Models, device: str = ""):
        self.models = models
        self._device_preference = device
        self._device: str | None = None
        self._resident: dict[str, Model] = {}
        self._threads: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    # the port bot.queue.Engine ---------------------------------------------------------------

    async def run(self, job: Job, on_progress, cancel: threading.Event) -> Result:
        loop = asyncio.get_running_loop()

        def progress(step: int, total: int) -> None:
            if cancel.is_set():
                raise JobCancelled(job.id)
            loop.call_soon_threadsafe(on_progress, step, total)

        return await loop.run_in_executor(self._thread(job.group), self.run_sync, job, progress)

    def close(self) -> None:
        for executor in self._threads.values():
            executor.shutdown(wait=False, cancel_futures=True)

    # work ------------------------------------------------------------------------------------

    def run_sync(self, job: Job, progress: Progress) -> Result:
        """Run one job to a Result on the calling thread. Never raises."""
        started = time.perf_counter()
        entry = self.models.entries.get(job.request.model)
        try:
            if entry is None:
                raise registry.ModelUnavailable(f"the model {job.request.model!r} is not on this server")
            model = self.load(entry)
            progress(0, 1)
            work = self._work(job, entry)
            items = model.run(work, progress)
            outputs = tuple(self._output(job, entry, model, i, seed, item)
                            for i, (seed, item) in enumerate(zip(work.seeds, items, strict=True)))
            status, error = Status.done, ""
        except JobCancelled:
            status, error, outputs = Status.cancelled, "", ()
        except (UserFacingError, images.ImageError) as failure:
            log.warning("job %s failed: %s", job.id, failure)
            status, error, outputs = Status.failed, str(failure), ()
        except Exception as failure:  # noqa: BLE001 - every failure becomes a result, never a dead worker
            status, outputs = Status.failed, ()
            error = _user_message(failure, job)
        model = self._resident.get(entry.name) if entry else None
        label = model.label if model else ""
        note = getattr(model, "note", "") if model else ""
        return Result(job_id=job.id, status=status, outputs=outputs, error=error, engine=label, note=note,
                      seconds=round(time.perf_counter() - started, 3))

    def load(self, entry: ModelEntry) -> Model:
        """The resident model for an entry, loading it on first use."""
        with self._lock:
            if entry.name in self._resident:
                return self._resident[entry.name]
        reason = registry.check(entry)
        if reason:
            raise registry.ModelUnavailable(reason)
        log.info("loading model %s (%s) on %s", entry.name, entry.kind, self._device_for(entry))
        model = registry.kind_module(entry).load(entry, self._device_for(entry))
        with self._lock:
            self._resident[entry.name] = model
        return model

    def resident(self) -> list[str]:
        return list(self._resident)

    def _device_for(self, entry: ModelEntry) -> str:
        if entry.kind == "classic":
            return "cpu"  # never import torch for the classic kind
        if self._device is None:
            self._device = self._device_preference or _pick_device()
        return self._device

    def _work(self, job: Job, entry: ModelEntry) -> Work:
        request = job.request
        source = _open(job.image)
        if job.action in RENDER_ACTIONS:
            longest = request.size or min(max(source.size), entry.size)
            source = images.fit(source, longest, entry.multiple)
        references = tuple(_open(data) for data in job.references)
        seed = request.seed if request.seed is not None else 0
        seeds = tuple(seed + i for i in range(request.num_images_per_prompt))
        return Work(action=job.action, request=request, entry=entry, image=source, references=references,
                    seeds=seeds, device=self._device_for(entry))

    def _output(self, job: Job, entry: ModelEntry, model: Model, index: int, seed: int,
                item: Image.Image | Clip) -> Output:
        if isinstance(item, Clip):
            return Output(index=index, seed=seed, data=item.data, media_type=item.media_type,
                          width=item.width, height=item.height)
        request = job.request
        parameters = images.format_parameters(
            request, seed=seed, width=item.width, height=item.height,
            steps=request.num_inference_steps or entry.num_inference_steps,
            guidance_scale=request.guidance_scale if request.guidance_scale is not None else entry.guidance_scale,
            sampler=getattr(model, "sampler", model.label), model=entry.name, strength=request.strength,
        )
        return Output(index=index, seed=seed, data=images.encode_png(item, parameters),
                      width=item.width, height=item.height)

    def _thread(self, group: str) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if group not in self._threads:
                self._threads[group] = concurrent.futures.ThreadPoolExecutor(1, f"engine-{group}")
            return self._threads[group]


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _user_message(failure: Exception, job: Job) -> str:
    name = type(failure).__name__
    if isinstance(failure, MemoryError) or name == "OutOfMemoryError" or "out of memory" in str(failure):
        log.warning("job %s ran out of memory: %s", job.id, failure)
        return "The engine ran out of memory for this job. Try a smaller --size or fewer images (--n)."
    log.exception("job %s failed", job.id)
    return f"Something went wrong while rendering (job {job.id}). It has been logged."
