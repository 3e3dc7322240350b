"""Status messages: one per job ("⏳ Queued — position 3" → "🎨 Rendering 40%" → "✅ Done"), edited
in place, throttled, and findable again after a restart.

The message's place is kept in memory and in the history (``chat:message``), so a job recovered
by a new process still edits the message the old one sent. A job's events wait (briefly) until
its status message exists, so the chat always reads status first, results after.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import TelegramError

from adapters.telegram import outbox, render
from adapters.telegram.keyboards import status_keyboard
from adapters.telegram.options import Options
from bot import presenter
from bot.history import History, JobRecord
from bot.jobs import Action, Event, Job, Status
from bot.service import Ticket

log = logging.getLogger(__name__)

# Events only move a status message forward: a late "queued" never overwrites "rendering 40%".
STAGES = {Status.queued: 0, Status.running: 1, Status.done: 2, Status.failed: 2, Status.cancelled: 2}
FINISHED_KEPT = 2000  # finished jobs remembered, so their late progress events are dropped


def progress_of(event: Event) -> tuple[int, int]:
    """How far along an event is: (stage, position or percent), compared as a tuple."""
    if event.status is Status.queued:
        return 0, -(event.position or 0)
    if event.status is Status.running:
        return 1, event.percent if event.total else -1
    return 2, 0


@dataclass
class Shown:
    chat_id: int
    message_id: int
    progress: tuple[int, int]
    text: str
    at: float  # time.monotonic() of the last edit


def place_of(record: JobRecord) -> tuple[int, int] | None:
    """(chat id, message id) stored in the history for a job's status message, if any."""
    chat, _, message = record.status_message.partition(":")
    try:
        return int(chat), int(message)
    except ValueError:
        return None


class StatusBoard:
    def __init__(self, bot: Bot, history: History, options: Options):
        self._bot = bot
        self._history = history
        self._options = options
        self._shown: dict[str, Shown] = {}
        self._sending: dict[str, asyncio.Event] = {}  # jobs whose status message is on its way
        self._last_action: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one edit at a time per job, in event order
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()

    def expect(self, ticket: Ticket) -> None:
        """Call right after submitting (no await in between): the jobs' events wait for ``announce``."""
        for job in ticket.jobs:
            self._sending.setdefault(job.id, asyncio.Event())

    async def announce(self, ticket: Ticket, chat_id: int, reply_to: int | None) -> None:
        """Send each job's status message, as a reply to the message that asked for it."""
        self.expect(ticket)
        for job in ticket.jobs:
            await self._announce(job, chat_id, reply_to, ticket.position if job is ticket.job else 0)

    async def _announce(self, job: Job, chat_id: int, reply_to: int | None, position: int) -> None:
        text = render.status_text(job, presenter.queued(position))
        try:
            message = await outbox.reply(self._bot, chat_id, reply_to, text, markup=status_keyboard(job.id))
            self._shown[job.id] = Shown(chat_id, message.message_id, (0, -position), text, time.monotonic())
            await self._history.set_status_message(job.id, f"{chat_id}:{message.message_id}")
        except TelegramError as error:
            log.warning("could not send the status message of job %s: %s", job.id, error)
        finally:
            self._sending.pop(job.id, asyncio.Event()).set()

    async def ready(self, job_id: str) -> None:
        """Wait until the job's status message has been sent (when this process is sending it)."""
        sending = self._sending.get(job_id)
        if sending is None:
            return
        try:
            await asyncio.wait_for(sending.wait(), self._options.attach_timeout)
        except TimeoutError:
            log.warning("status message of job %s took too long; going on without it", job_id)
            self._sending.pop(job_id, None)

    async def show(self, record: JobRecord, event: Event) -> bool:
        """Edit the job's status message for this event (throttled; final states always shown).

        Edits of one job are made one at a time, in event order, and never go backwards.
        Returns False when the job has no status message this process can edit.
        """
        if record.id in self._finished:
            return True
        async with self._locks.setdefault(record.id, asyncio.Lock()):
            if record.id in self._finished:
                return True
            shown = self._shown.get(record.id)
            if shown is None:
                place = place_of(record)
                if place is None:
                    return False
                shown = self._shown[record.id] = Shown(*place, progress=(-1, 0), text="", at=0.0)
            final = event.status.finished
            progress = progress_of(event)
            text = render.status_text(record, presenter.status_line(record, event))
            if progress < shown.progress or text == shown.text:
                return True
            now = time.monotonic()
            if not final and now - shown.at < self._options.edit_interval:
                return True  # throttled: Telegram allows about one message a second per chat
            shown.progress, shown.text, shown.at = progress, text, now
            if final:
                self._finish(record.id)
            markup = None if final else status_keyboard(record.id)
            return await outbox.edit(self._bot, shown.chat_id, shown.message_id, text, markup=markup)

    def _finish(self, job_id: str) -> None:
        self._shown.pop(job_id, None)
        self._locks.pop(job_id, None)
        self._last_action.pop(job_id, None)
        self._finished[job_id] = None
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)

    async def chat_action(self, record: JobRecord) -> None:
        """ "sending a photo…" in the chat while a job renders (it shows for 5 s; resent every few)."""
        now = time.monotonic()
        if now - self._last_action.get(record.id, -1e9) < self._options.action_interval:
            return
        self._last_action[record.id] = now
        try:
            action = ChatAction.UPLOAD_VIDEO if record.action is Action.animate else ChatAction.UPLOAD_PHOTO
            await self._bot.send_chat_action(int(record.origin.chat_id), action)
        except TelegramError as error:
            log.debug("chat action for job %s failed: %s", record.id, error)
