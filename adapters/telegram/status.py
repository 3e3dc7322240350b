"""Status messages on Telegram: how the core's ``StatusTracker`` (bot.status: throttling, order,
waiting for the post, the message's place in the history) shows on a chat.

A status message starts as text ("⏳ Queued — position 3 · ready in about 20 s", with ✖️ Cancel).
A text message can't become a photo (editMessageMedia edits media only), so the first live
preview posts a photo status (the preview, the status line as its caption, the same button) and
deletes the text one; later previews swap the photo in place (editMessageMedia) and progress edits
its caption. When the job ends, ``Delivery.finish`` turns the status message into the result.
The content filter sees results, not previews, so in a group a preview is sent behind a spoiler.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from telegram import Bot, InputFile, InputMediaPhoto
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from adapters.telegram import outbox, render
from adapters.telegram.delivery import Delivery
from adapters.telegram.keyboards import status_keyboard
from adapters.telegram.options import Options
from bot import presenter
from bot.history import History, JobRecord
from bot.jobs import Action, Event, Job, Status
from bot.service import Ticket
from bot.status import Place, StatusTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Where:
    """Where a status message goes: the chat, answering the message that asked."""

    chat_id: int
    reply_to: int | None


class StatusBoard:
    """The Telegram face of the status tracker (its ``Screen``) and the service's listener."""

    def __init__(self, bot: Bot, history: History, options: Options, delivery: Delivery):
        self._bot = bot
        self._delivery = delivery
        self._options = options
        self._photos: set[Place] = set()  # status messages that show a preview (photo + caption)
        self._last_action: dict[str, float] = {}
        self.tracker: StatusTracker[Where] = StatusTracker(
            self,
            history,
            interval=options.edit_interval,
            preview_interval=options.preview_interval,
            patience=options.attach_timeout,
        )

    async def announce(self, ticket: Ticket, chat_id: int, reply_to: int | None) -> None:
        """Send each job's status message, as a reply to the message that asked for it."""
        for job in ticket.jobs:
            try:
                await self.tracker.post(job, ticket.position if job is ticket.job else 0, Where(chat_id, reply_to))
            except TelegramError as error:
                log.warning("could not send the status message of job %s: %s", job.id, error)

    async def on_event(self, record: JobRecord, event: Event) -> None:
        """The service's listener for Telegram jobs (also those recovered after a restart)."""
        await self.tracker.on_event(record, event)
        if event.status is Status.running:
            await self.chat_action(record)

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

    # the Screen --------------------------------------------------------------------------------

    async def send(self, job: Job, line: str, where: Where) -> Place:
        text = render.status_text(job, line)
        message = await outbox.reply(self._bot, where.chat_id, where.reply_to, text, markup=status_keyboard(job.id))
        return Place(where.chat_id, message.message_id)

    async def edit(self, place: Place, record: JobRecord, line: str) -> None:
        markup = status_keyboard(record.id)
        text = render.status_text(record, line)
        if place not in self._photos and await outbox.edit(self._bot, place.chat, place.message, text, markup=markup):
            return
        # a photo status (maybe one a process before a restart made): its caption
        if await outbox.edit_caption(self._bot, place.chat, place.message, caption(record, line), markup=markup):
            self._photos.add(place)

    async def preview(self, place: Place, record: JobRecord, line: str, jpeg: bytes) -> Place:
        photo = InputFile(jpeg, filename=f"{record.id}-preview.jpg", attach=True)
        spoiler = not record.origin.private  # the content filter sees results, not previews: in groups, a spoiler
        if place in self._photos:
            try:
                await self._bot.edit_message_media(
                    InputMediaPhoto(photo, caption=caption(record, line), has_spoiler=spoiler),
                    chat_id=place.chat,
                    message_id=place.message,
                    reply_markup=status_keyboard(record.id),
                )
                return place
            except BadRequest as error:
                if outbox.not_modified(error):
                    return place
                log.info("could not swap the preview of job %s (%s); sending it anew", record.id, error.message)
        sent = await self._bot.send_photo(
            place.chat,
            InputFile(jpeg, filename=f"{record.id}-preview.jpg"),
            caption=caption(record, line),
            reply_markup=status_keyboard(record.id),
            reply_parameters=outbox.reply_to(record.origin.message_id),
            has_spoiler=spoiler,
        )
        moved = Place(place.chat, sent.message_id)
        self._photos.add(moved)
        self._photos.discard(place)
        await outbox.delete(self._bot, place.chat, place.message)
        return moved

    async def finish(self, place: Place | None, record: JobRecord, line: str) -> Place | None:
        self._last_action.pop(record.id, None)
        previewed = place is not None and place in self._photos
        if place is not None:
            self._photos.discard(place)
        return await self._delivery.finish(place, record, line, previewed=previewed)


def caption(record: JobRecord, line: str) -> str:
    """A status line as a photo's caption (captions are shorter than messages)."""
    return presenter.clip(render.status_text(record, line), render.CAPTION_LIMIT)
