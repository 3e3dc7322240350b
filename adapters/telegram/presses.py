"""Button presses. Every press is answered exactly once (a short toast; a refusal as an alert).

Result buttons carry the core's button ids; everything else they need comes from the history,
so a button pressed after a restart works the same. Callback data can be forged by a client, so
a press only reaches jobs its presser may see (their own, or posted in this chat).
"""

from __future__ import annotations

import logging

from telegram import Bot, CallbackQuery, MaybeInaccessibleMessage, Message, Update, User
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from adapters.telegram import outbox, render
from adapters.telegram.commands import Commands
from adapters.telegram.delivery import Delivery, is_still
from adapters.telegram.inputs import origin_of, result_of, user_name
from adapters.telegram.keyboards import (
    HISTORY_PATTERN,
    SETTING_PATTERN,
    album_keyboard,
    result_keyboard,
    settings_keyboard,
)
from adapters.telegram.server import Admins
from adapters.telegram.status import StatusBoard
from bot import presenter
from bot.actions import Button, Press, parse_button
from bot.history import JobRecord
from bot.jobs import Origin
from bot.service import Refusal, Service

log = logging.getLogger(__name__)

TOAST_LIMIT = 200


class Toast:
    """Answers a callback query once (Telegram shows a spinner until it is answered)."""

    def __init__(self, query: CallbackQuery):
        self._query = query
        self.sent = False

    async def __call__(self, text: str = "", *, alert: bool = False) -> None:
        if self.sent:
            return
        self.sent = True
        if len(text) > TOAST_LIMIT:
            text = text[: TOAST_LIMIT - 1] + "…"
        try:
            await self._query.answer(text or None, show_alert=alert)
        except TelegramError as error:  # e.g. "query is too old"
            log.info("answering a button press failed: %s", error)


class Presses:
    def __init__(
        self, bot: Bot, service: Service, board: StatusBoard, delivery: Delivery, commands: Commands, admins: Admins
    ):
        self._bot = bot
        self._service = service
        self._board = board
        self._delivery = delivery
        self._commands = commands
        self._admins = admins

    async def press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A result button: ``action:job[:index]``."""
        query = update.callback_query
        toast = Toast(query)
        try:
            press = parse_button(query.data or "")
            if press is not None:
                await self._press(query, press, toast)
        except Refusal as refusal:
            await toast(str(refusal), alert=True)
        finally:
            await toast()

    async def _press(self, query: CallbackQuery, press: Press, toast: Toast) -> None:
        message = query.message
        if message is None:
            raise Refusal("That button only works in the chat it came with.")
        origin = origin_of(message, query.from_user)
        if press.button is Button.cancel:
            is_admin = isinstance(message, Message) and await self._admins.of(message, query.from_user)
            cancelled = await self._service.cancel(origin, press.job_id, is_admin=is_admin)
            await toast("✖️ Cancelling…" if cancelled else "Too late — it has already finished.")
            return
        if press.button is Button.delete:
            if not isinstance(message, Message):
                raise Refusal("That button only works in the chat it came with.")
            await self._delete(message, query.from_user, press, origin, toast)
            return
        if press.button is Button.forget:  # its "job" is the confirmation code
            answer = await self._service.forget(origin, press.job_id)
            await toast("🗑 Forgotten")
            await outbox.edit(
                self._bot, message.chat.id, message.message_id, f"🗑 Forgotten: {answer.jobs} job(s) and their files."
            )
            return
        record = await self._service.job(origin, press.job_id)
        if press.button is Button.original:
            output, data = await self._service.original(origin, record.id, press.index)
            await toast("📄 Sending the original…")
            await self._delivery.send_original(record, output, data, message.chat.id, message.message_id)
        elif press.button is Button.source:  # a picture, not a job: never through service.act
            sheet = await self._service.before_after(origin, record.id, press.index)
            await toast("↔️ Before / after")
            await self._delivery.send_before_after(record, press.index, message.chat.id, message.message_id, sheet)
        elif press.button is Button.more:  # the rest of the image's buttons, on the same keyboard
            await toast()
            await self._more(message, record, press.index)
        elif press.button is Button.info:
            await toast()
            await outbox.reply(self._bot, message.chat.id, message.message_id, render.info_text(record), html=True)
        elif press.button.action is None:
            raise Refusal("That button doesn't do anything here.")
        else:
            await self._act(query, press, origin, toast)

    async def _more(self, message: MaybeInaccessibleMessage, record: JobRecord, index: int) -> None:
        """➕ More: the keyboard it is on grows the Zoom out, Pan and Cut out rows of that image."""
        pictures = [o.index for o in record.outputs if is_still(o.media_type)]
        if index not in pictures:
            raise Refusal("That result isn't ready (or has no such image).")
        if len(pictures) == 1:
            markup = result_keyboard(record.id, index, more=True)
        else:
            markup = album_keyboard(record.id, pictures, more=index)
        try:
            await self._bot.edit_message_reply_markup(message.chat.id, message.message_id, reply_markup=markup)
        except BadRequest as error:
            if not outbox.not_modified(error):
                raise Refusal("That message can't show more buttons any more.") from None

    async def _delete(self, message: Message, user: User, press: Press, origin: Origin, toast: Toast) -> None:
        """🗑 Delete: the core decides (owner, or an admin of this chat; only the job's own message)."""
        shown = result_of(message, self._bot.id)  # the job this message shows, read from the message itself
        admin = await self._admins.of(message, user)
        await self._service.delete(origin, press.job_id, shown_in=shown[0] if shown else None, is_admin=admin)
        await toast("🗑 Deleted")
        try:
            await self._bot.delete_message(message.chat.id, message.message_id)
        except TelegramError as error:
            log.info("could not delete result message %s: %s", message.message_id, error)

    async def _act(self, query: CallbackQuery, press: Press, origin: Origin, toast: Toast) -> None:
        """Reroll, variations, upscale, fix face, animate: a new job through the core."""
        name = str(presenter.LABELS[press.button])
        ticket = await self._service.act(origin, press)
        self._board.expect(ticket)
        await toast(f"{name}: queued — position {ticket.position}" if ticket.position > 1 else f"{name}: on it!")
        await self._board.announce(ticket, query.message.chat.id, query.message.message_id)

    async def setting(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``set:model:NAME``, ``set:strength:0.6`` (or ``default``), ``set:n:2`` from /settings."""
        query = update.callback_query
        toast = Toast(query)
        try:
            match = SETTING_PATTERN.match(query.data or "")
            key, value = match["key"], match["value"]
            origin = origin_of(query.message, query.from_user)
            defaults = await self._service.change_setting(origin, key, value)
            await toast(f"Saved: {key} {value}")
            await outbox.edit(
                self._bot,
                query.message.chat.id,
                query.message.message_id,
                render.settings_text(defaults, self._service.models, user_name(query.from_user)),
                markup=settings_keyboard(
                    defaults, self._service.models, min(self._service.settings.limits.max_num_images, 8)
                ),
            )
        except Refusal as refusal:
            await toast(str(refusal), alert=True)
        finally:
            await toast()

    async def page(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``hist:N``: another page of /history (private chats only)."""
        query = update.callback_query
        toast = Toast(query)
        try:
            if query.message is None or query.message.chat.type != ChatType.PRIVATE:
                raise Refusal("Your history is private; send /history in our own chat.")
            page = int(HISTORY_PATTERN.match(query.data or "")["page"])
            await toast()
            await self._commands.send_history(origin_of(query.message, query.from_user), page, query.message.message_id)
        except Refusal as refusal:
            await toast(str(refusal), alert=True)
        finally:
            await toast()

    async def expired(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Any other callback data (an old keyboard, a forged press)."""
        await Toast(update.callback_query)("That button has expired.")
