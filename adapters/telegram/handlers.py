"""The routing table: which Telegram update goes to which handler (first match wins).

PTB's ``CommandHandler`` ignores captions, so a photo captioned ``/remix …`` is matched by a
caption filter; text commands (``/remix``, ``/remix@ThisBot`` in groups) by ``CommandHandler``.
Edited messages are never acted on.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.error import Forbidden, TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from adapters.telegram import outbox, render
from adapters.telegram.commands import Commands
from adapters.telegram.keyboards import HISTORY_PATTERN, SETTING_PATTERN
from adapters.telegram.presses import Presses
from adapters.telegram.remixes import Remixes
from adapters.telegram.server import Server
from bot.actions import BUTTON_PATTERN

log = logging.getLogger(__name__)


class _InAlbum(filters.MessageFilter):
    """Messages that belong to a media group (an album)."""

    def filter(self, message: Message) -> bool:
        return bool(message.media_group_id)


NEW = filters.UpdateType.MESSAGE  # not edits
PRIVATE = filters.ChatType.PRIVATE
PICTURE = filters.PHOTO | filters.Document.IMAGE
IN_ALBUM = _InAlbum(name="in_album")
REMIX_CAPTION = filters.CaptionRegex(r"(?i)^\s*/remix(?:@\w+)?(?:\s|$)")


def routes(remixes: Remixes, commands: Commands, presses: Presses, server: Server) -> list[BaseHandler]:
    return [
        MessageHandler(NEW & PICTURE & IN_ALBUM, remixes.from_album_item),
        MessageHandler(NEW & PICTURE & REMIX_CAPTION, remixes.from_caption),
        CommandHandler("remix", remixes.from_command, filters=NEW),
        CommandHandler("start", commands.start, filters=NEW),
        CommandHandler("help", commands.help, filters=NEW),
        CommandHandler("models", commands.models, filters=NEW),
        CommandHandler("styles", commands.styles, filters=NEW),
        CommandHandler("loras", commands.loras, filters=NEW),
        CommandHandler("settings", commands.settings, filters=NEW),
        CommandHandler("history", commands.history, filters=NEW),
        CommandHandler("cancel", commands.cancel, filters=NEW),
        CommandHandler("info", commands.info, filters=NEW),
        CommandHandler("forget", commands.forget, filters=NEW),
        CommandHandler("server", server.command, filters=NEW),
        MessageHandler(NEW & PRIVATE & PICTURE, remixes.from_private_picture),
        MessageHandler(NEW & filters.TEXT & ~filters.COMMAND & filters.REPLY, remixes.from_reply),
        MessageHandler(NEW & PRIVATE & filters.TEXT & ~filters.COMMAND, commands.nudge),
        MessageHandler(NEW & PRIVATE & filters.COMMAND, commands.unknown),
        CallbackQueryHandler(presses.press, pattern=BUTTON_PATTERN),
        CallbackQueryHandler(presses.setting, pattern=SETTING_PATTERN),
        CallbackQueryHandler(presses.page, pattern=HISTORY_PATTERN),
        CallbackQueryHandler(presses.expired),
    ]


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Anything unexpected: the details to the log, one friendly line to the chat."""
    error = context.error
    if isinstance(error, Forbidden):  # blocked by the user, removed from the group
        log.warning("Telegram refused: %s", error)
        return
    log.error("handling a Telegram update failed: %s", type(error).__name__, exc_info=error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    message = update.effective_message
    try:
        await outbox.reply(
            context.bot, update.effective_chat.id, message.message_id if message else None, render.FRIENDLY_ERROR
        )
    except TelegramError:
        log.info("could not tell the chat about the error")
