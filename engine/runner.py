"""The engine: runs jobs on the models their requests name, one thread per model group.

A model group (``gpu``, ``classic``, …) owns one thread (``engine-<group>``), so a device is only
ever used by one batch at a time and the event loop never blocks. The group thread only loads and
runs models: decoding a job's images and fitting them to the working size happen before, encoding
its outputs (PNG) after, on the codec threads (``engine-codec``), while the group thread works.

Models stay resident within a memory budget (``engine.residency``: least recently used models are
evicted, a resident model is never loaded again). When a job has to wait for its group thread and
its model is not resident, the model is prefetched on the loader thread if the budget has room.

Batching: concurrent ``run`` calls for one group wait at its thread. When the thread takes a job
whose model can batch (an ``engine.work.BatchingModel``, like diffusers-img2img), it adds the
waiting jobs of the same model with the same key (working size, steps, strength, guidance), up to
``batch_size`` jobs (default: 8 on a GPU, 1 on a CPU, where a batch only makes every job wait for
the whole batch: see BENCHMARKS.md), waiting at most ``batch_window`` seconds for more, and runs
them as one call with one seeded generator per output: each job's pixels match its unbatched run
within 1/255.
``batch_window = 0`` or ``batch_size = 1`` turns batching off. The classic kind does not batch.
A queue only reaches the batcher by running several jobs of a group at once: ``concurrency(group)``
says how many (arq's ``max_jobs`` in ``remixbot worker``).

Cancelling inside a batch: a cancelled job leaves its batch at the next step (its ``run`` returns
``cancelled`` at once and its outputs are dropped) while the others go on; the batch itself stops
only when every job in it is cancelled. A job still waiting is settled as cancelled at the running
batch's next step, or when the thread reaches it.

Every failure becomes a ``Result`` with a user-safe message; details go to the log with the job id.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from bot import images
from bot.jobs import Action, Job, JobCancelled, Output, Progress, Result, Status, Verdict
from bot.loras import lora_hashes
from bot.models import ModelEntry, Models
from bot.moderation import SOURCE_FLAGGED
from bot.queue.port import ProgressReport
from bot.settings import Limits
from engine import device as devices
from engine import registry
from engine.kinds import upscale as upscale_kind
from engine.residency import Residency, free_memory
from engine.safety import Safety
from engine.work import BatchingModel, Clip, Model, UserFacingError, Work

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Items = Sequence[Image.Image | Clip]  # what a model's run gives for one job: an image or clip per seed

# Actions that re-render the source at the model's working size (img2img-like).
RENDER_ACTIONS = (Action.remix, Action.reroll, Action.vary)
CODEC_THREADS = 2
GPU_BATCH_SIZE = 8  # jobs per batch on CUDA unless REMIXBOT_BATCH_SIZE says otherwise


class Engine:
    def __init__(
        self,
        models: Models,
        device: str = "",
        *,
        memory_budget: int = 0,
        batch_size: int = 0,
        batch_window: float = 0.03,
        cudnn_benchmark: bool = True,
        safety: Safety | None = None,
        max_render: int = Limits().max_size,
    ):
        """``memory_budget`` in bytes (0: 80% of the device's memory); ``batch_size`` 0: 8 on a GPU, 1 on a
        CPU; ``batch_window`` in seconds (0: no batching); ``cudnn_benchmark``: see ``engine.device``;
        ``safety``: the content classifier every output goes through (its verdict on ``Output.verdict``),
        None for none; ``max_render``: the longest side a model renders at — a ``--size`` above it is rendered
        at the model's own size, then upscaled (``enlarge``)."""
        self.models = models
        self.max_render = max_render
        self.safety = safety
        self._device_preference = device
        self._cudnn_benchmark = cudnn_benchmark
        self._device: str | None = None
        self._batch_size = max(0, int(batch_size))
        self.batch_window = max(0.0, float(batch_window))
        self.residency = Residency(self._load, memory_budget or None, self._expected_nbytes)
        self.batches: collections.Counter[int] = collections.Counter()  # batch size → batches run
        self._lines: dict[str, _Line] = {}
        self._codec = concurrent.futures.ThreadPoolExecutor(CODEC_THREADS, "engine-codec")
        self._lock = threading.Lock()
        self._device_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, models: Models, settings: Settings) -> Engine:
        return cls(
            models,
            settings.device,
            memory_budget=settings.memory_budget,
            batch_size=settings.batch_size,
            batch_window=settings.batch_window,
            safety=Safety.of(models, settings.device or "cpu"),
            max_render=settings.limits.max_size,
        )

    # the port bot.queue.Engine ---------------------------------------------------------------

    async def run(self, job: Job, on_progress: ProgressReport, cancel: threading.Event) -> Result:
        """Run one job to a Result: decode, wait for the group thread (maybe in a batch), encode.

        ``on_progress(step, total)`` at every step, and with a ``preview`` (a small JPEG) when the
        model renders one (diffusers-img2img: at most every ``engine.preview.INTERVAL`` seconds).

        Never raises, but an asyncio cancellation of the caller propagates (the job leaves its batch).
        """
        started = time.perf_counter()
        entry = self.models.entries.get(job.request.model)
        model: Model | None = None
        work: Work | None = None
        outputs: tuple[Output, ...] = ()
        if job.screen_source and self.safety is not None:  # the bot could not check it (Redis mode)
            (verdict,) = await self.safety.classify([job.image])
            if verdict.flagged:
                return _refused(job, verdict)
        try:
            if entry is None:
                raise registry.ModelUnavailable(f"the model {job.request.model!r} is not on this server")
            work = await self._on_codec_thread(self._work, job, entry)
            model, items = await self._wait_for_run(job, entry, work, on_progress, cancel)
            outputs = await self._on_codec_thread(self._outputs, job, entry, model, work, items)
            status, error = Status.done, ""
        except Exception as failure:  # noqa: BLE001 - every failure becomes a result, never a dead worker
            status, error = _failure(failure, job)
        return self._result(job, entry, model, status, outputs, error, started, work)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            lines = list(self._lines.values())
        for line in lines:
            line.close()
        self._codec.shutdown(wait=False, cancel_futures=True)
        self.residency.close()

    # the rest of the engine's face ---------------------------------------------------------------

    def run_sync(self, job: Job, progress: Progress) -> Result:
        """Run one job to a Result on the calling thread, alone (no batch). Never raises."""
        started = time.perf_counter()
        entry = self.models.entries.get(job.request.model)
        model: Model | None = None
        work: Work | None = None
        outputs: tuple[Output, ...] = ()
        if job.screen_source and self.safety is not None:
            verdict = self.safety.item(_open(job.image))
            if verdict.flagged:
                return _refused(job, verdict)
        try:
            if entry is None:
                raise registry.ModelUnavailable(f"the model {job.request.model!r} is not on this server")
            work = self._work(job, entry)
            model = self.residency.acquire(entry)
            try:
                progress(0, 1)
                items = model.run(work, progress)
            finally:
                self.residency.release(entry)
            items = self.enlarge(work, items, progress)
            outputs = self._outputs(job, entry, model, work, items)
            status, error = Status.done, ""
        except Exception as failure:  # noqa: BLE001 - every failure becomes a result
            status, error = _failure(failure, job)
        return self._result(job, entry, model, status, outputs, error, started, work)

    def load(self, entry: ModelEntry) -> Model:
        """The resident model for an entry, loading it on first use."""
        model = self.residency.acquire(entry)
        self.residency.release(entry)
        return model

    def prefetch(self, name: str) -> concurrent.futures.Future[bool] | None:
        """Load model ``name`` on the loader thread if the budget has room (a hint: never evicts).

        The future says whether it is (or is being made) resident; None for an unknown name.
        """
        entry = self.models.entries.get(name)
        return None if entry is None else self.residency.prefetch(entry)

    def resident(self) -> list[str]:
        return self.residency.resident()

    def concurrency(self, group: str) -> int:
        """How many jobs of ``group`` a queue should hand over at once: the batch size where batching can
        happen (a group with a kind that batches, batching on), else 1."""
        entry = next((e for e in self.models if e.queue_group == group and _batches(e)), None)
        if entry is None or self.batch_window <= 0:
            return 1
        return self.batch_size(entry)

    def batch_size(self, entry: ModelEntry) -> int:
        """The most jobs of ``entry`` that run as one batch."""
        if self._batch_size:
            return self._batch_size
        return GPU_BATCH_SIZE if self._device_for(entry).startswith("cuda") else 1

    def stats(self) -> dict[str, Any]:
        """Counters for logs and metrics: loads, evictions, batch sizes, memory in use and budget."""
        return {
            "resident": self.resident(),
            "loads": dict(self.residency.loads),
            "evictions": dict(self.residency.evictions),
            "batches": dict(self.batches),
            "memory_used": self.residency.used(),
            "memory_budget": self.residency.budget,
        }

    # the caller's side ------------------------------------------------------------------------

    async def _on_codec_thread(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._codec, function, *args)
        except RuntimeError:
            if self._closed:  # shut down under the job
                raise _ShuttingDown() from None
            raise

    async def _wait_for_run(
        self, job: Job, entry: ModelEntry, work: Work, on_progress: ProgressReport, cancel: threading.Event
    ) -> tuple[Model, Items]:
        """Hand the work to the group thread and wait for (model, items); raises the run's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Model, Items]] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            def resolve() -> None:
                if not future.done():
                    future.set_exception(error) if error is not None else future.set_result(value)

            _call_soon(loop, resolve)

        def report(step: int, total: int) -> None:
            _call_soon(loop, on_progress, step, total)

        def show(step: int, total: int, preview: bytes) -> None:  # on the group thread, from the model
            if not item.finished and not item.cancelled:
                _call_soon(loop, on_progress, step, total, preview)

        item = _Pending(
            job=job, entry=entry, work=replace(work, preview=show), cancel=cancel, report=report, settle=settle
        )
        if self._line(job.group).put(item) and self.residency.peek(entry.name) is None:
            self.residency.prefetch(entry)  # waits behind other work: load its model meanwhile, if it fits
        try:
            return await future
        except asyncio.CancelledError:
            item.abandoned = True  # leaves its batch (or the line) at the next step
            raise

    # the group thread's side ------------------------------------------------------------------

    def _serve(self, line: _Line) -> None:
        while True:
            head = line.take()
            if head is None:
                return
            try:
                self._serve_head(line, head)
            except BaseException as error:  # noqa: BLE001 - the thread must outlive any job
                log.exception("engine thread %s: unexpected error", line.group)
                head.finish(error=error if isinstance(error, Exception) else RuntimeError(str(error)))
            finally:
                line.idle()

    def _serve_head(self, line: _Line, head: _Pending) -> None:
        if head.cancelled:
            head.finish(error=JobCancelled(head.job.id))
            return
        try:
            model = self.residency.acquire(head.entry)
        except Exception as error:  # noqa: BLE001 - the job's result says why
            head.finish(error=error)
            return
        batch = [head]
        try:
            batch += self._collect(line, head, model)
            self._run_batch(line, model, batch)
        except Exception as error:  # noqa: BLE001 - a bug here must not leave a job waiting forever
            log.exception("engine thread %s: running %s failed", line.group, head.entry.name)
            for item in batch:
                item.finish(error=error)
        finally:
            self.residency.release(head.entry)

    def _collect(self, line: _Line, head: _Pending, model: Model) -> list[_Pending]:
        """Waiting jobs that can share ``head``'s batch, gathered for up to ``batch_window`` seconds."""
        limit = self.batch_size(head.entry)
        if limit <= 1 or self.batch_window <= 0 or not isinstance(model, BatchingModel):
            return []
        batch_key = model.batch_key
        key = batch_key(head.work)

        def fits(item: _Pending) -> bool:
            if item.entry.name != head.entry.name or item.cancelled:
                return False
            try:
                return batch_key(item.work) == key
            except Exception:  # noqa: BLE001 - a job the kind cannot key runs alone
                log.exception("batch_key failed for job %s", item.job.id)
                return False

        return line.collect(fits, limit - 1, self.batch_window)

    def _run_batch(self, line: _Line, model: Model, batch: list[_Pending]) -> None:
        live = []
        for item in batch:
            if item.cancelled:
                item.finish(error=JobCancelled(item.job.id))
            else:
                live.append(item)
        if not live:
            return
        with self._lock:
            self.batches[len(live)] += 1
        log.debug("running %s on %s", ", ".join(item.job.id for item in live), live[0].entry.name)

        def progress(step: int, total: int) -> None:
            line.sweep()
            for item in live:
                if not item.finished and item.cancelled:
                    item.finish(error=JobCancelled(item.job.id))
            running = [item for item in live if not item.finished]
            if not running:
                raise JobCancelled("every job of the batch was cancelled")
            for item in running:
                item.report(step, total)

        try:
            progress(0, 1)
            outcomes: Sequence[Items | Exception]
            if len(live) > 1 and isinstance(model, BatchingModel):  # _collect batches no other model's jobs
                outcomes = model.run_batch([item.work for item in live], progress)
            else:
                outcomes = [model.run(live[0].work, progress)]
        except JobCancelled:
            for item in live:
                item.finish(error=JobCancelled(item.job.id))
            return
        except Exception as error:  # noqa: BLE001 - handed to each job
            if len(live) > 1 and _out_of_memory(error):
                log.warning("a batch of %d ran out of memory (%s); running its jobs one at a time", len(live), error)
                del error
                free_memory()
                for item in live:
                    if not item.finished:
                        self._run_batch(line, model, [item])
                return
            for item in live:
                item.finish(error=error)
            return
        for item, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                item.finish(error=outcome)
                continue
            try:
                enlarged = self.enlarge(item.work, outcome, item.report)
            except Exception as error:  # noqa: BLE001 - this job's alone
                item.finish(error=error)
            else:
                item.finish((model, enlarged))

    def _line(self, group: str) -> _Line:
        with self._lock:
            if group not in self._lines:
                self._lines[group] = _Line(group, self._serve)
            return self._lines[group]

    # models -----------------------------------------------------------------------------------

    def _load(self, entry: ModelEntry) -> Model:
        reason = registry.check(entry)
        if reason:
            raise registry.ModelUnavailable(reason)
        device = self._device_for(entry)
        log.info("loading model %s (%s) on %s", entry.name, entry.kind, device)
        return registry.kind_of(entry).load(entry, device)

    def _expected_nbytes(self, entry: ModelEntry) -> int | None:
        return registry.kind_of(entry).expected_nbytes(entry, self._device_for(entry))

    def _device_for(self, entry: ModelEntry) -> str:
        fixed = registry.kind_of(entry).device
        if fixed is not None:
            return fixed  # kinds without torch (classic, noop) never make us import it
        with self._device_lock:  # not self._lock: picking the device imports torch, which takes seconds
            if self._device is None:
                self._device = self._device_preference or devices.pick()
                devices.configure_torch(self._device, cudnn_benchmark=self._cudnn_benchmark)
                if self.residency.budget is None:
                    self.residency.budget = devices.default_budget(self._device)
                log.info(
                    "engine device %s, memory budget %s",
                    self._device,
                    "none" if self.residency.budget is None else f"{self.residency.budget >> 20} MiB",
                )
            return self._device

    # codec threads ----------------------------------------------------------------------------

    def _work(self, job: Job, entry: ModelEntry) -> Work:
        """Decode the job's images and fit the source to the working size."""
        request = job.request
        source = _open(job.image)
        if job.action in RENDER_ACTIONS:
            native = request.size if request.size is not None and request.size <= self.max_render else None
            longest = native or min(max(source.size), entry.size)  # a larger --size: upscaled after (enlarge)
            source = images.fit(source, longest, entry.multiple)
        references = tuple(_open(data) for data in job.references)
        seed = request.seed if request.seed is not None else 0
        seeds = tuple(seed + i for i in range(request.num_images_per_prompt))
        log.debug("decoded job %s", job.id)
        return Work(
            action=job.action,
            request=request,
            entry=entry,
            image=source,
            references=references,
            seeds=seeds,
            device=self._device_for(entry),
            load_model=self._model_named,
            lora_files=self.models.loras,
        )

    def enlarge(self, work: Work, items: Items, progress: Progress) -> Items:
        """``--size`` above ``max_render`` (``--size 2k``): each rendered image upscaled to that longest side
        with the best upscaler that can run here (the Upscale button's first runnable choice: Real-ESRGAN
        once installed, else classic Lanczos), then resized to the exact side. Other items pass as they are."""
        target = work.request.size
        if work.action not in RENDER_ACTIONS or target is None or target <= self.max_render:
            return items
        entry, upscaler = self._upscaler()
        enlarged: list[Image.Image | Clip] = []
        rendered = max(item.width for item in items), max(item.height for item in items)
        for seed, item in zip(work.seeds, items, strict=True):
            if isinstance(item, Clip) or max(item.size) >= target:
                enlarged.append(item)
                continue
            factor = min(max(2, math.ceil(target / max(item.size))), upscale_kind.MAX_SCALE)
            request = replace(work.request, scale=factor, size=None)
            step = Work(Action.upscale, request, entry, item.convert("RGB"), (), (seed,), work.device)
            (big,) = upscaler.run(step, progress)
            assert isinstance(big, Image.Image)
            if max(big.size) != target:
                ratio = target / max(big.size)
                size = (max(1, round(big.width * ratio)), max(1, round(big.height * ratio)))
                big = big.resize(size, Image.Resampling.LANCZOS)
            if "A" in item.getbands():  # a cut-out keeps its transparency, resized alongside
                big.putalpha(item.getchannel("A").resize(big.size, Image.Resampling.LANCZOS))
            enlarged.append(big)
        work.notes.append(f"rendered at {max(rendered)} px, upscaled to {target} px ({upscaler.label})")
        return enlarged

    def _upscaler(self) -> tuple[ModelEntry, Model]:
        """The Upscale button's model: its first choice that can run here (classic Lanczos runs everywhere)."""
        names = self.models.choices.get(Action.upscale) or (self.models.for_action(Action.upscale).name,)
        for name in (*names, "classic"):
            entry = self.models.entries.get(name)
            if entry is not None and registry.check(entry) is None:
                return self._model_named(name)
        raise UserFacingError("No upscaler can run on this server, so --size can't go above the render size.")

    def _model_named(self, name: str) -> tuple[ModelEntry, Model]:
        """Another registry entry and its resident model, for a kind that drives a second model."""
        entry = self.models.entries.get(name)
        if entry is None:
            raise registry.ModelUnavailable(f"the model {name!r} is not on this server")
        return entry, self.load(entry)

    def _outputs(self, job: Job, entry: ModelEntry, model: Model, work: Work, items: Items) -> tuple[Output, ...]:
        outputs = tuple(
            self._output(job, entry, model, i, seed, item)
            for i, (seed, item) in enumerate(zip(work.seeds, items, strict=True))
        )
        if self.safety is not None:  # every output (every frame of a clip) before it leaves the engine
            outputs = tuple(replace(o, verdict=self.safety.item(item)) for o, item in zip(outputs, items, strict=True))
        log.debug("encoded job %s", job.id)
        return outputs

    def _output(
        self, job: Job, entry: ModelEntry, model: Model, index: int, seed: int, item: Image.Image | Clip
    ) -> Output:
        if isinstance(item, Clip):
            return Output(
                index=index, seed=seed, data=item.data, media_type=item.media_type, width=item.width, height=item.height
            )
        request = job.request
        guidance = request.guidance_scale if request.guidance_scale is not None else entry.guidance_scale
        parameters = images.format_parameters(
            request,
            seed=seed,
            width=item.width,
            height=item.height,
            steps=request.num_inference_steps or entry.num_inference_steps,
            guidance_scale=guidance,
            sampler=model.label,
            model=entry.name,
            strength=request.strength,
            lora_hashes=lora_hashes(request.loras, self.models.loras),
        )
        return Output(
            index=index, seed=seed, data=images.encode_png(item, parameters), width=item.width, height=item.height
        )

    def _result(
        self,
        job: Job,
        entry: ModelEntry | None,
        model: Model | None,
        status: Status,
        outputs: tuple[Output, ...],
        error: str,
        started: float,
        work: Work | None = None,
    ) -> Result:
        if model is None and entry is not None:
            model = self.residency.peek(entry.name)
        label = model.label if model else ""
        notes = work.notes if work is not None else []
        note = "; ".join(dict.fromkeys(text for text in notes if text))
        return Result(
            job_id=job.id,
            status=status,
            outputs=outputs if status is Status.done else (),
            error=error,
            engine=label,
            note=note,
            seconds=round(time.perf_counter() - started, 3),
        )


@dataclass(eq=False)
class _Pending:
    """A job at its group thread: its decoded work, its cancel flag, and how to hand back."""

    job: Job
    entry: ModelEntry
    work: Work
    cancel: threading.Event
    report: Callable[[int, int], None]  # progress, posted to the job's event loop
    settle: Callable[[Any, BaseException | None], None]  # the outcome, posted to the job's event loop
    finished: bool = False  # settled: set on the group thread only
    abandoned: bool = False  # the waiting coroutine went away

    @property
    def cancelled(self) -> bool:
        return self.abandoned or self.cancel.is_set()

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self.settle(value, error)


class _Line:
    """One model group's thread and the jobs waiting for it, first come first served."""

    def __init__(self, group: str, serve: Callable[[_Line], None]):
        self.group = group
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._condition = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=serve, args=(self,), name=f"engine-{group}", daemon=True)
        self._thread.start()

    def put(self, item: _Pending) -> bool:
        """Queue ``item``; True when it has to wait behind other work."""
        with self._condition:
            if self._closed:
                item.finish(error=_ShuttingDown())
                return False
            waits = self._busy or bool(self._waiting)
            self._waiting.append(item)
            self._condition.notify_all()
            return waits

    def take(self) -> _Pending | None:
        """The next job (the thread is busy until ``idle``); None once closed."""
        with self._condition:
            while not self._waiting and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            self._busy = True
            return self._waiting.popleft()

    def idle(self) -> None:
        with self._condition:
            self._busy = False

    def collect(self, fits: Callable[[_Pending], bool], limit: int, window: float) -> list[_Pending]:
        """Take up to ``limit`` waiting jobs that fit, waiting up to ``window`` seconds for them."""
        taken: list[_Pending] = []
        deadline = time.monotonic() + window
        with self._condition:
            while True:
                for item in list(self._waiting):
                    if len(taken) < limit and fits(item):
                        self._waiting.remove(item)
                        taken.append(item)
                remaining = deadline - time.monotonic()
                if len(taken) >= limit or remaining <= 0 or self._closed:
                    return taken
                self._condition.wait(remaining)

    def sweep(self) -> None:
        """Settle the waiting jobs that were cancelled (called at every step of the running batch)."""
        with self._condition:
            gone = [item for item in self._waiting if item.cancelled]
            for item in gone:
                self._waiting.remove(item)
        for item in gone:
            item.finish(error=JobCancelled(item.job.id))

    def close(self) -> None:
        with self._condition:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._condition.notify_all()
        for item in left:
            item.finish(error=JobCancelled(item.job.id))


class _ShuttingDown(UserFacingError):
    def __init__(self) -> None:
        super().__init__("the engine is shutting down; try again in a moment")


def _batches(entry: ModelEntry) -> bool:
    """Whether the entry's kind can run several jobs as one batch."""
    if entry.kind not in registry.KINDS:
        return False
    try:
        return registry.kind_of(entry).batches
    except ImportError:
        return False


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _refused(job: Job, verdict: Verdict) -> Result:
    """A marked job whose source the classifier flagged: not run (``Job.screen_source``)."""
    log.info("job %s: its source was flagged (%s %.2f); not run", job.id, verdict.label, verdict.score)
    return Result(job.id, Status.failed, error=SOURCE_FLAGGED, refused=verdict)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _out_of_memory(failure: BaseException) -> bool:
    name = type(failure).__name__
    return isinstance(failure, MemoryError) or name == "OutOfMemoryError" or "out of memory" in str(failure)


def _failure(failure: Exception, job: Job) -> tuple[Status, str]:
    """(status, user-safe error) for what stopped a job."""
    if isinstance(failure, JobCancelled):
        return Status.cancelled, ""
    if isinstance(failure, (UserFacingError, images.ImageError)):
        log.warning("job %s failed: %s", job.id, failure)
        return Status.failed, str(failure)
    if _out_of_memory(failure):
        log.warning("job %s ran out of memory: %s", job.id, failure)
        return Status.failed, ("The engine ran out of memory for this job. Try a smaller --size or fewer images (--n).")
    log.error("job %s failed", job.id, exc_info=failure)
    return Status.failed, f"Something went wrong while rendering (job {job.id}). It has been logged."
