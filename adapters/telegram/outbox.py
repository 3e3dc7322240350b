"""Sending and editing messages the way every part of the adapter does it.

Replies never fail because the message they answer is gone, and an edit that changes nothing
("message is not modified") is not an error.
"""

from __future__ import annotations

import logging

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

log = logging.getLogger(__name__)


def reply_to(message_id: int | str | None) -> ReplyParameters | None:
    """Reply parameters that still send when the message replied to was deleted."""
    if not message_id:
        return None
    return ReplyParameters(message_id=int(message_id), allow_sending_without_reply=True)


async def reply(
    bot: Bot,
    chat_id: int | str,
    message_id: int | str | None,
    text: str,
    *,
    markup: InlineKeyboardMarkup | None = None,
    html: bool = False,
) -> Message:
    return await bot.send_message(
        chat_id=int(chat_id),
        text=text,
        reply_parameters=reply_to(message_id),
        reply_markup=markup,
        parse_mode=ParseMode.HTML if html else None,
    )


async def edit(
    bot: Bot,
    chat_id: int,
    message_id: int,
    text: str,
    *,
    markup: InlineKeyboardMarkup | None = None,
    html: bool = False,
) -> bool:
    """Edit a message's text. False when it is gone (deleted, too old to edit)."""
    try:
        await bot.edit_message_text(
            text=text,
            chat_id=chat_id,
            message_id=message_id,
            reply_markup=markup,
            parse_mode=ParseMode.HTML if html else None,
        )
    except BadRequest as error:
        if not_modified(error):
            return True
        log.info("could not edit message %s:%s: %s", chat_id, message_id, error.message)
        return False
    return True


async def edit_caption(
    bot: Bot, chat_id: int, message_id: int, caption: str, *, markup: InlineKeyboardMarkup | None = None
) -> bool:
    """Edit a photo's caption. False when the message is gone."""
    try:
        await bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=caption, reply_markup=markup)
    except BadRequest as error:
        if not_modified(error):
            return True
        log.info("could not edit the caption of %s:%s: %s", chat_id, message_id, error.message)
        return False
    return True


async def delete(bot: Bot, chat_id: int, message_id: int) -> bool:
    """Delete a message of the bot's. False when it can't (gone already, too old)."""
    try:
        await bot.delete_message(chat_id=chat_id, message_id=message_id)
    except TelegramError as error:
        log.info("could not delete message %s:%s: %s", chat_id, message_id, error)
        return False
    return True


def not_modified(error: BadRequest) -> bool:
    return "not modified" in error.message.lower()
