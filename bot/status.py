"""Status messages, once for every face: one per job ("⏳ Queued — position 3 · ready in about 20 s"
→ "🎨 Rendering 40%" with a live preview → the result), edited in place.

``StatusTracker`` owns the rules; a face plugs in a ``Screen`` that only renders:

- **Wait for the post.** A job's events can arrive before its status message exists (the face
  posts it after ``submit`` returns). Edits wait for it, up to ``patience`` seconds; a post that
  failed (``post`` raised, or ``abandon``) means there is nothing to edit.
- **Find it again.** The message's place (``chat:message``) goes into the history, so a job
  recovered by a new process still edits the message the old one posted.
- **Throttle.** At most one edit per ``interval`` seconds per job (the platform's flood limits),
  previews at most one per ``preview_interval``; held-back progress is not lost: the newest state
  is shown once the interval is over. The final state is never held back.
- **Order.** A status message only moves forward: a late "queued" never overwrites "rendering",
  a late 30% never overwrites 40%, nothing overwrites the result.
- **Finish.** The finished job goes to ``Screen.finish``, which turns the status message (and its
  preview) into the result, once the edit under way, if any, is done.

Status lines (ETA included) come from ``bot.presenter``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from bot import presenter
from bot.history import History, JobRecord
from bot.jobs import Event, Job, Status

log = logging.getLogger(__name__)

PREVIEW_INTERVAL = 3.0  # seconds between two previews of one job (the engine renders one as often)
FINISHED_KEPT = 2000  # finished jobs remembered, so their late progress events are dropped

C = TypeVar("C", contravariant=True)  # where a face posts a status message (its own context)
Ctx = TypeVar("Ctx")


@dataclass(frozen=True)
class Place:
    """Where a status message is: a chat (or channel) and a message in it."""

    chat: int
    message: int

    def __str__(self) -> str:
        return f"{self.chat}:{self.message}"

    @classmethod
    def parse(cls, text: str) -> Place | None:
        """``"chat:message"`` as the history keeps it (Telegram's group chats have negative ids)."""
        chat, _, message = text.partition(":")
        try:
            return cls(int(chat), int(message))
        except ValueError:
            return None


class Screen(Protocol[C]):
    """A face's status messages: it renders, the tracker decides what and when."""

    async def send(self, job: Job, line: str, where: C) -> Place:
        """Post the status message of ``job`` showing ``line``. Raises when it can't."""
        ...

    async def edit(self, place: Place, record: JobRecord, line: str) -> None:
        """Show ``line`` in the status message."""
        ...

    async def preview(self, place: Place, record: JobRecord, line: str, jpeg: bytes) -> Place:
        """Show ``line`` and the preview picture ``jpeg``. Returns where the status message is now
        (a face that can't put a picture into its message replaces the message)."""
        ...

    async def finish(self, place: Place | None, record: JobRecord, line: str) -> Place | None:
        """Turn the status message (None: there is none) into the finished job's result; ``line``
        says how it ended. Returns where the result is, if it moved."""
        ...


def progress_of(event: Event) -> tuple[int, int]:
    """How far along an event is, compared as a tuple: waiting < starting < 0% … 100% < finished."""
    if event.status is Status.queued:
        return 0, 0  # positions move both ways (fair share): the newest one is right
    if event.status is Status.running:
        return 1, event.percent if event.total else -1
    return 2, 0


@dataclass
class _Job:
    """What the tracker knows of one job it is showing."""

    job_id: str
    located: asyncio.Future[Place | None]  # the status message, once posted (None: there is none)
    moved: Place | None = None  # where the status message is since the face moved it
    progress: tuple[int, int] = (-1, 0)  # of the newest event seen
    line: str = ""  # the newest status line
    shown: str = ""  # the line the message shows
    jpeg: bytes = b""  # the newest preview not shown yet
    last_edit: float = float("-inf")
    last_preview: float = float("-inf")
    finished: bool = False
    editing: bool = False
    abandoned: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set on a new line and when the job ends
    flusher: asyncio.Task[None] | None = None


class StatusTracker(Generic[Ctx]):
    """Every job's status message on one face. ``on_event`` is the face's service listener (or is
    called by it): it never waits on the platform and never raises."""

    def __init__(
        self,
        screen: Screen[Ctx],
        history: History | None,
        *,
        interval: float = 1.5,
        preview_interval: float = PREVIEW_INTERVAL,
        patience: float = 60.0,
        online: asyncio.Event | None = None,
    ):
        self._screen = screen
        self._history = history  # None: the face has no messages to find again (the console)
        self.interval = interval  # seconds between two edits of one job
        self.preview_interval = preview_interval  # seconds between two previews of one job
        self.patience = patience  # how long edits wait for a job's status message to be posted
        self.online = online or _set(asyncio.Event())  # edits wait until the face is connected
        self.closed = False
        self._jobs: dict[str, _Job] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()

    # posting -----------------------------------------------------------------------------------

    async def post(self, job: Job, position: int, where: Ctx) -> Place:
        """Post the job's status message ("⏳ Queued — position 3") and remember where it is.
        Raises what ``Screen.send`` raised; the job's edits then know there is no message."""
        state = self._jobs.get(job.id) or _Job(job.id, asyncio.get_running_loop().create_future())
        if job.id not in self._finished:  # (a job can finish before its post when nobody waits for it)
            self._jobs[job.id] = state
        line = presenter.queued(position)
        try:
            place = await self._screen.send(job, line, where)
        except BaseException:
            if not state.located.done():
                state.located.set_result(None)  # no message to edit; the result still goes out
            raise
        state.shown = line
        state.line = state.line or line  # an event may have come first: the flusher shows it
        state.last_edit = time.monotonic()
        await self._store(job.id, place)
        if not state.located.done():
            state.located.set_result(place)
        return place

    def abandon(self, job_id: str) -> None:
        """The job is being given up (its status message could not be posted, so it is cancelled):
        its events don't wait for a message, and its end is not shown."""
        state = self._job(job_id)
        state.abandoned = True
        if not state.located.done():
            state.located.set_result(None)

    # events ------------------------------------------------------------------------------------

    async def on_event(self, record: JobRecord, event: Event) -> None:
        if self.closed:
            if event.status.finished:
                log.warning("job %s finished while shutting down; its history has it", record.id)
            return
        if record.id in self._finished:
            return  # a late event of a job already shown finished
        state = self._job(record.id)
        if record.status_message and not state.located.done():
            place = Place.parse(record.status_message)
            if place is not None:
                state.located.set_result(place)
            else:
                log.warning("unreadable status message place %r of job %s", record.status_message, record.id)
        if event.status.finished:
            if not state.finished:
                state.finished = True
                state.wake.set()
                self._spawn(self._finish(state, record), f"status-finish-{record.id}")
            return
        progress = progress_of(event)
        if progress < state.progress:
            return  # older than what was seen: never shown after it
        line = presenter.progress(event)
        if line != state.line:
            state.wake.set()  # a flusher waiting for a preview's turn may now have an edit to make
        state.progress, state.line = progress, line
        if event.preview:
            state.jpeg = event.preview
        if state.flusher is None or state.flusher.done():
            state.flusher = asyncio.create_task(self._flush(state, record), name=f"status-{record.id}")

    async def close(self, timeout: float = 10.0) -> None:
        """Let results under way reach the chat (up to ``timeout``), stop progress edits."""
        self.closed = True
        pending: set[asyncio.Task[None]] = set(self._finishing)
        for state in self._jobs.values():
            state.finished = True  # no more progress edits
            state.wake.set()
            if state.flusher is not None and not state.flusher.done():
                if not state.editing:
                    state.flusher.cancel()
                pending.add(state.flusher)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._jobs.clear()

    async def settled(self) -> None:
        """Until every finished job seen so far has been handed to ``Screen.finish``."""
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    # inside ------------------------------------------------------------------------------------

    def _job(self, job_id: str) -> _Job:
        state = self._jobs.get(job_id)
        if state is None:
            state = self._jobs[job_id] = _Job(job_id, asyncio.get_running_loop().create_future())
        return state

    def _spawn(self, work: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _store(self, job_id: str, place: Place) -> None:
        if self._history is not None:
            await self._history.set_status_message(job_id, str(place))

    async def _locate(self, state: _Job) -> Place | None:
        if state.moved is not None:
            return state.moved
        if state.located.done():
            return state.located.result()
        if self.patience <= 0:
            return None  # a face that posts nothing to wait for (the console)
        try:
            return await asyncio.wait_for(asyncio.shield(state.located), self.patience)
        except TimeoutError:
            log.warning("the status message of job %s took too long; going on without it", state.job_id)
            return None

    async def _flush(self, state: _Job, record: JobRecord) -> None:
        """Show the newest line (and preview), each at most once per its interval, until the job
        finishes."""
        await self.online.wait()
        place = await self._locate(state)
        if place is None:
            return
        while not state.finished:
            state.wake.clear()
            now = time.monotonic()
            edit_at = state.last_edit + self.interval
            preview_at = max(edit_at, state.last_preview + self.preview_interval)
            if state.jpeg and now >= preview_at:
                place = await self._show(state, record, place, state.jpeg)
            elif state.line != state.shown and now >= edit_at:
                place = await self._show(state, record, place, b"")
            elif state.jpeg or state.line != state.shown:
                due = edit_at if state.line != state.shown else preview_at
                try:
                    await asyncio.wait_for(state.wake.wait(), max(due - now, 0.0))
                except TimeoutError:
                    pass
            else:
                return  # nothing new to show

    async def _show(self, state: _Job, record: JobRecord, place: Place, jpeg: bytes) -> Place:
        line = state.line
        state.shown, state.last_edit, state.editing = line, time.monotonic(), True
        if jpeg:
            state.jpeg, state.last_preview = b"", state.last_edit
        try:
            if jpeg:
                moved = await self._screen.preview(place, record, line, jpeg)
                if moved != place:
                    state.moved = place = moved
                    await self._store(record.id, moved)
            else:
                await self._screen.edit(place, record, line)
        except Exception as error:  # the platform's trouble with one edit never stops the job's status
            log.info("status edit of job %s failed: %s", record.id, error)
        finally:
            state.editing = False
        return place

    async def _finish(self, state: _Job, record: JobRecord) -> None:
        try:
            flusher = state.flusher
            if flusher is not None and not flusher.done():
                if not state.editing:
                    flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
            await self.online.wait()
            place = await self._locate(state)
            if state.abandoned:
                return
            moved = await self._screen.finish(place, record, presenter.outcome(record))
            if moved is not None and moved != place:
                await self._store(record.id, moved)
        except Exception:
            log.exception("could not show the end of job %s", record.id)
        finally:
            self._jobs.pop(record.id, None)
            self._finished[record.id] = None
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event
