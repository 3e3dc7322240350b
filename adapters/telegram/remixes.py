"""The ways in: every one turns a Telegram message into the same ``Service.submit`` call.

* a photo or image file captioned ``/remix <prompt and flags>`` (``/remix@ThisBot`` in groups);
* ``/remix <prompt>`` in reply to a message with a picture — when it is one of this bot's
  results, the new job's parent is that result and its lossless file is the source;
* in a private chat, a photo whose caption is just the prompt;
* a text reply to one of this bot's results (works in groups with privacy mode on);
* an album of 2–4 pictures with the command on one of them: the first picture is the source,
  the others are references.
"""

from __future__ import annotations

import logging

from telegram import Bot, Message, Update, User
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from adapters.telegram import outbox, render
from adapters.telegram.albums import Albums
from adapters.telegram.inputs import Picture, download, origin_of, picture_in, remix_args, result_of
from adapters.telegram.options import Options
from adapters.telegram.status import StatusBoard
from bot.jobs import Origin
from bot.service import Refusal, Service

log = logging.getLogger(__name__)


class Remixes:
    def __init__(self, bot: Bot, service: Service, board: StatusBoard, options: Options, download_limit: int):
        self._bot = bot
        self._service = service
        self._board = board
        self._limit = download_limit
        self.albums = Albums(options.album_wait, self._on_album)

    # handlers --------------------------------------------------------------------------------

    async def from_caption(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo or image file whose caption is ``/remix …``."""
        message = update.effective_message
        args = remix_args(message.caption, self._bot.username)
        if args is not None:
            await self.remix(message, update.effective_user, args, [picture_in(message)])

    async def from_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/remix …`` as text: in reply to a picture, or on its own (then: how to use it)."""
        message = update.effective_message
        args = remix_args(message.text, self._bot.username) or ""
        target = message.reply_to_message
        if target is None:
            await outbox.reply(self._bot, message.chat.id, message.message_id, render.HOWTO)
            return
        picture = picture_in(target)
        if picture is None:
            await outbox.reply(self._bot, message.chat.id, message.message_id, render.NO_PICTURE)
            return
        parent = result_of(target, self._bot.id)
        await self.remix(message, update.effective_user, args, [picture], parent=parent)

    async def from_private_picture(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A private chat: a photo whose caption is the prompt. No caption: an image file goes to the core,
        which reads the settings it may carry (or asks for a prompt); a photo (never any settings) gets a hint."""
        message = update.effective_message
        caption = (message.caption or "").strip()
        if not caption and message.document is not None:
            await self.remix(message, update.effective_user, "", [picture_in(message)])
            return
        if not caption or caption.startswith("/"):
            await outbox.reply(
                self._bot, message.chat.id, message.message_id, render.PRIVATE_HINT if not caption else render.HOWTO
            )
            return
        await self.remix(message, update.effective_user, caption, [picture_in(message)])

    async def from_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text reply (no command) to one of this bot's results remixes that result."""
        message = update.effective_message
        target = message.reply_to_message
        parent = result_of(target, self._bot.id)
        picture = picture_in(target)
        if parent is None or picture is None:
            if message.chat.type == ChatType.PRIVATE:
                await outbox.reply(self._bot, message.chat.id, message.message_id, render.HOWTO)
            return
        await self.remix(message, update.effective_user, message.text or "", [picture], parent=parent)

    async def from_album_item(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.albums.add(update.effective_message)

    async def _on_album(self, messages: list[Message]) -> None:
        command = next((m for m in messages if remix_args(m.caption, self._bot.username) is not None), None)
        private = messages[0].chat.type == ChatType.PRIVATE
        if command is not None:
            args = remix_args(command.caption, self._bot.username) or ""
        elif private and any(m.caption for m in messages):
            command = next(m for m in messages if m.caption)
            args = command.caption.strip()
        else:
            if private:
                first = messages[0]
                await outbox.reply(self._bot, first.chat.id, first.message_id, render.PRIVATE_HINT)
            return
        pictures = [picture for picture in map(picture_in, messages) if picture is not None]
        await self.remix(command, command.from_user, args, pictures)

    # the common path -------------------------------------------------------------------------

    async def remix(
        self,
        message: Message,
        user: User | None,
        text: str,
        pictures: list[Picture | None],
        parent: tuple[str, int] | None = None,
    ) -> None:
        """Fetch the pictures, submit, and answer at once with a status message per job."""
        origin = origin_of(message, user)
        try:
            if not pictures or pictures[0] is None:
                raise Refusal(render.NO_PICTURE)
            image, parent = await self._source(origin, pictures[0], parent)
            references = tuple(
                [await download(self._bot, picture, self._limit) for picture in pictures[1:] if picture is not None]
            )
            ticket = await self._service.submit(
                origin,
                text,
                image,
                references,
                parent_job=parent[0] if parent else None,
                parent_output=parent[1] if parent else None,
            )
        except Refusal as refusal:
            await outbox.reply(self._bot, message.chat.id, message.message_id, f"⚠️ {refusal}")
            return
        self._board.expect(ticket)  # before any await: the job's events wait for its status message
        await self._board.announce(ticket, message.chat.id, message.message_id)
        if ticket.offer:
            await outbox.reply(
                self._bot,
                message.chat.id,
                message.message_id,
                f"💡 This picture carries its own settings. To reuse them, reply to it with:\n/remix {ticket.offer}",
            )

    async def _source(
        self, origin: Origin, picture: Picture, parent: tuple[str, int] | None
    ) -> tuple[bytes, tuple[str, int] | None]:
        """The source image: a result's lossless file from the history (when the user may see that
        result here), else the download."""
        if parent is not None:
            try:
                output, data = await self._service.original(origin, *parent)
                if output.media_type.startswith("image/"):
                    return data, parent
            except Refusal as refusal:
                log.info("result %s not used as the source: %s", parent[0], refusal)
                parent = None  # not a result this user can build on here: no lineage either
        return await download(self._bot, picture, self._limit), parent
