"""``/server …`` on Telegram: a group's admin commands, who counts as a chat admin, and a user's own
NSFW setting for their private chat (``/settings nsfw``).

A chat admin is whoever ``getChatMember`` says is its ``creator`` or an ``administrator`` (or an
anonymous admin: a message sent as the group itself). A "yes" is cached for ``ttl`` seconds per
chat and user, so an admin's burst of commands or button presses costs one call (and a demoted admin
keeps the rights at most that long); a "no" is asked again each time, so a member just promoted is an
admin at once. Every admin check of the adapter (``/server``, ``/help``, cancelling or deleting
someone else's job) goes through ``Admins``.
The line after ``/server`` goes to the core (``bot.admin``) as it is; ``/server block`` (or
``unblock``) sent in reply to someone's message names them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot, Message, Update, User
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from adapters.telegram import outbox
from adapters.telegram.inputs import origin_of
from bot import admin
from bot.service import Refusal, Service

log = logging.getLogger(__name__)

STATUSES = ("creator", "administrator")  # getChatMember statuses of a chat's admins
TTL = 60.0  # seconds a "yes, an admin" from getChatMember is trusted
CACHE_MAX = 4096  # (chat, user) answers kept at most; the expired ones go first

# the command menu a group's admins see on top of everyone's (setMyCommands, all_chat_administrators)
MENU = (("server", "This group's rules for the bot: /server show"),)

NOT_ADMIN = "Only this group's admins can change its settings."
PRIVATE_ONLY = (
    "/server sets a group's rules: use it there, as one of its admins. "
    "Here in our chat, /settings nsfw block|spoiler|allow sets what happens to pictures the content filter flags."
)
OWN_NSFW = {
    "block": "Flagged pictures are held back (the default).",
    "spoiler": "Flagged pictures come behind a spoiler.",
    "allow": "Flagged pictures come as they are.",
}
NSFW_IN_GROUP = "Your NSFW setting is for our private chat; in a group its admins decide (/server nsfw)."


class Admins:
    """Whether a user administers a chat, as ``getChatMember`` says; a "yes" cached for ``ttl`` seconds."""

    def __init__(self, bot: Bot, ttl: float = TTL, clock: Callable[[], float] = time.monotonic):
        self._bot = bot
        self._ttl = ttl
        self._clock = clock
        self._known: dict[tuple[int, int], float] = {}  # (chat, user) → until when they count as an admin

    async def check(self, chat_id: int, user_id: int) -> bool:
        """True when the user is the chat's creator or an administrator. A failed call: False (not kept)."""
        key, now = (chat_id, user_id), self._clock()
        until = self._known.get(key)
        if until is not None and until > now:
            return True
        self._known.pop(key, None)
        try:
            member = await self._bot.get_chat_member(chat_id, user_id)
        except TelegramError as error:
            log.info("could not tell whether %s administers chat %s: %s", user_id, chat_id, error)
            return False
        if member.status not in STATUSES:
            return False
        if len(self._known) >= CACHE_MAX:
            self._known = {k: v for k, v in self._known.items() if v > now}
            if len(self._known) >= CACHE_MAX:
                self._known.clear()
        self._known[key] = now + self._ttl
        return True

    async def of(self, message: Message, user: User | None) -> bool:
        """Whether the sender of ``message`` (or ``user``, who pressed a button on it) administers its
        chat. Never in a private chat."""
        if message.chat.type == ChatType.PRIVATE:
            return False
        if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
            return True  # an anonymous admin, writing as the group
        if user is None:
            return False
        return await self.check(message.chat.id, user.id)


class Server:
    def __init__(self, bot: Bot, service: Service, admins: Admins):
        self._bot = bot
        self._service = service
        self.admins = admins

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/server …`` from a group admin: the core's answer, as plain text."""
        message = update.effective_message
        if message is None:
            return
        if message.chat.type == ChatType.PRIVATE:
            text = PRIVATE_ONLY
        elif not await self.admins.of(message, update.effective_user):
            text = NOT_ADMIN
        else:
            line = " ".join(context.args or [])
            replied = message.reply_to_message
            if line.lower() in ("block", "unblock") and replied is not None and replied.from_user is not None:
                line += f" {replied.from_user.id}"  # /server block, in reply to one of their messages
            try:
                text = await admin.server_command(self._service, origin_of(message, update.effective_user), line)
            except Refusal as refusal:
                text = str(refusal)
        await outbox.reply(self._bot, message.chat.id, message.message_id, text)

    async def help_lines(self, message: Message, user: User | None) -> str:
        """What /help adds for a group's admins; "" for everyone else."""
        if not await self.admins.of(message, user):
            return ""
        head, *verbs = admin.HELP
        return "\n\n" + head + "\n" + "\n".join(f"• {line}" for line in verbs)

    async def own_nsfw(self, message: Message, user: User | None, args: list[str]) -> None:
        """``/settings nsfw [block|spoiler|allow]``: the user's own setting, for their private chat."""
        if message.chat.type != ChatType.PRIVATE:
            await outbox.reply(self._bot, message.chat.id, message.message_id, NSFW_IN_GROUP)
            return
        origin = origin_of(message, user)
        try:
            if args:
                value = await self._service.change_nsfw(origin, args[0].lower())
                text = f"Saved. {OWN_NSFW[value.value]}"
            else:
                value = (await self._service.rules(origin)).nsfw
                text = f"NSFW: {value.value}. {OWN_NSFW[value.value]} Change it: /settings nsfw block|spoiler|allow"
        except Refusal as refusal:
            text = str(refusal)
        await outbox.reply(self._bot, message.chat.id, message.message_id, text)
