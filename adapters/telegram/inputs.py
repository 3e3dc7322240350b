"""What comes in from Telegram: who asked, which picture, which command, which earlier result.

Photos arrive as several sizes (the largest is taken); images sent as files are taken as they
are (full quality). Files over what the Bot API lets a bot download are refused before the
download, with a clear message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from telegram import Bot, MaybeInaccessibleMessage, Message, User
from telegram.error import TelegramError

from adapters.telegram import render
from bot.actions import parse_button
from bot.jobs import Origin
from bot.service import Refusal

log = logging.getLogger(__name__)

BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile's cap on the official server
PLATFORM = "telegram"

_REMIX = re.compile(r"^/remix(?:@(?P<bot>\w+))?(?:\s+(?P<args>.*))?$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Picture:
    """A picture in a message: a photo (largest size) or an image document."""

    file_id: str
    file_size: int | None
    message: Message


def picture_in(message: Message | None) -> Picture | None:
    if message is None:
        return None
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        return Picture(largest.file_id, largest.file_size, message)
    document = message.document
    if document is not None and (document.mime_type or "").lower().startswith("image/"):
        return Picture(document.file_id, document.file_size, message)
    return None


async def download(bot: Bot, picture: Picture, limit: int) -> bytes:
    """The picture's bytes. Raises Refusal (too big, or Telegram would not hand it over)."""
    if picture.file_size and picture.file_size > limit:
        raise Refusal(render.too_big(picture.file_size, limit))
    try:
        file = await bot.get_file(picture.file_id)
        if file.file_size and file.file_size > limit:
            raise Refusal(render.too_big(file.file_size, limit))
        return bytes(await file.download_as_bytearray())
    except TelegramError as error:
        log.warning("downloading %s failed: %s", picture.file_id, error)
        raise Refusal("I couldn't fetch that picture from Telegram; please send it again.") from None


def remix_args(text: str | None, bot_username: str | None) -> str | None:
    """The prompt and flags after ``/remix`` (or ``/remix@ThisBot``); None when it isn't ours."""
    match = _REMIX.match((text or "").strip())
    if match is None:
        return None
    if match["bot"] and (bot_username or "").lower() != match["bot"].lower():
        return None  # /remix@SomeOtherBot
    return (match["args"] or "").strip()


def result_of(message: Message | None, bot_id: int) -> tuple[str, int] | None:
    """(job id, output index) when ``message`` is one of this bot's results, else None."""
    if message is None or message.from_user is None or message.from_user.id != bot_id:
        return None
    tagged = render.result_tag(message.caption)
    if tagged is not None:
        return tagged
    markup = message.reply_markup
    indexes = set()
    for row in markup.inline_keyboard if markup else ():
        for button in row:
            press = parse_button(button.callback_data if isinstance(button.callback_data, str) else "")
            if press is not None and press.button.takes_output:
                indexes.add((press.job_id, press.index))
    return indexes.pop() if len(indexes) == 1 else None


def user_name(user: User | None) -> str:
    if user is None:
        return ""
    return f"@{user.username}" if user.username else user.full_name


def origin_of(message: MaybeInaccessibleMessage, user: User | None) -> Origin:
    """The core's Origin for a message from ``user`` (the sender, or whoever pressed a button)."""
    return Origin(
        platform=PLATFORM,
        user_id=str(user.id if user else 0),
        chat_id=str(message.chat.id),
        user_name=user_name(user),
        message_id=str(message.message_id),
        private=message.chat.type == "private",
    )
