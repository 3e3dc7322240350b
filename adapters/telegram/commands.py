"""The slash commands: /start, /help, /models, /settings, /history, /cancel, /info."""

from __future__ import annotations

import asyncio
import re

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMediaPhoto, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from adapters.telegram import outbox, previews, render
from adapters.telegram.inputs import origin_of, user_name
from adapters.telegram.keyboards import history_keyboard, settings_keyboard
from adapters.telegram.options import Options
from adapters.telegram.server import Server
from bot import presenter
from bot.actions import Button, button_id
from bot.history import JobRecord
from bot.jobs import Origin
from bot.service import Refusal, Service

# What the command menu shows (setMyCommands).
MENU = (
    ("remix", "Remix a picture: caption it /remix <prompt>, or reply /remix to it"),
    ("help", "How to use me, with an example"),
    ("models", "The models on this server"),
    ("styles", "The --style presets here"),
    ("loras", "The LoRAs for <lora:name:0.8>"),
    ("settings", "Your default model, strength and number of images"),
    ("history", "Your recent jobs"),
    ("cancel", "Cancel your waiting jobs"),
    ("info", "Every setting of a job: /info <job>"),
    ("forget", "Delete your history and its files"),
)

JOB_ID = re.compile(r"^[0-9a-f]{12}$")


class Commands:
    def __init__(self, bot: Bot, service: Service, options: Options, server: Server):
        self._bot = bot
        self._service = service
        self._options = options
        self._server = server

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.args and context.args[0] == "history":  # the deep link /history sends from groups
            await self.history(update, context)
        else:
            await self.help(update, context)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        extra = await self._server.help_lines(message, update.effective_user)  # a group's admins only
        await outbox.reply(
            self._bot, message.chat.id, message.message_id, render.help_text(self._service.settings.limits) + extra
        )

    async def nudge(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Private text that isn't a command: how to remix."""
        message = update.effective_message
        await outbox.reply(self._bot, message.chat.id, message.message_id, render.HOWTO)

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        await outbox.reply(
            self._bot, message.chat.id, message.message_id, "I don't know that command. /help shows what I can do."
        )

    async def models(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        availability = await self._service.availability()
        await outbox.reply(
            self._bot, message.chat.id, message.message_id, render.models_text(self._service.models, availability)
        )

    async def styles(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        listing = await self._service.styles(origin_of(message, update.effective_user))
        text = presenter.styles_text(listing, render.HTML, render.MESSAGE_LIMIT)
        await outbox.reply(self._bot, message.chat.id, message.message_id, text, html=True)

    async def loras(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        text = presenter.loras_text(await self._service.loras(), render.HTML, render.MESSAGE_LIMIT)
        await outbox.reply(self._bot, message.chat.id, message.message_id, text, html=True)

    async def settings(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if context.args and context.args[0].lower() == "nsfw":  # /settings nsfw [block|spoiler|allow]
            await self._server.own_nsfw(message, update.effective_user, context.args[1:])
            return
        defaults = await self._service.user_settings(origin_of(message, update.effective_user))
        await outbox.reply(
            self._bot,
            message.chat.id,
            message.message_id,
            render.settings_text(defaults, self._service.models, user_name(update.effective_user)),
            markup=settings_keyboard(defaults, self._service.models, self._max_n()),
        )

    def _max_n(self) -> int:
        return min(self._service.settings.limits.max_num_images, 8)

    async def history(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message.chat.type != ChatType.PRIVATE:
            link = f"https://t.me/{self._bot.username}?start=history"
            button = InlineKeyboardButton("📜 My history", url=link)
            await outbox.reply(
                self._bot,
                message.chat.id,
                message.message_id,
                "Your history is private — I'll show it in our own chat.",
                markup=InlineKeyboardMarkup([[button]]),
            )
            return
        args = [a for a in (context.args or []) if a.isdigit()]
        page = max(int(args[0]) - 1, 0) if args else 0
        await self.send_history(origin_of(message, update.effective_user), page, message.message_id)

    async def send_history(self, origin: Origin, page: int, reply_to: int | None) -> None:
        """A page of the user's jobs: thumbnails, then a list with a 🔄 (remix again) per job."""
        per_page = self._options.history_page
        records = await self._service.jobs(origin, page=page, per_page=per_page)
        chat = int(origin.chat_id)
        if not records:
            text = "No jobs yet — send me a photo with a caption to start." if page == 0 else "No older jobs."
            await outbox.reply(self._bot, chat, reply_to, text)
            return
        more = bool(await self._service.jobs(origin, page=page + 1, per_page=per_page))
        thumbs = [await asyncio.to_thread(previews.thumbnail, self._picture_of(record)) for record in records]
        hidden = [any(o.flagged for o in record.outputs) for record in records]  # the content filter flagged it
        if len(thumbs) == 1:
            await self._bot.send_photo(
                chat,
                InputFile(thumbs[0], filename="1.jpg"),
                caption="1",
                reply_parameters=outbox.reply_to(reply_to),
                has_spoiler=hidden[0],
            )
        else:
            await self._bot.send_media_group(
                chat,
                [
                    InputMediaPhoto(
                        InputFile(t, filename=f"{i + 1}.jpg", attach=True), caption=str(i + 1), has_spoiler=hidden[i]
                    )
                    for i, t in enumerate(thumbs)
                ],
                reply_parameters=outbox.reply_to(reply_to),
            )
        await outbox.reply(
            self._bot,
            chat,
            reply_to,
            render.history_text(records, page),
            markup=history_keyboard(records, page, more),
            html=True,
        )

    def _picture_of(self, record: JobRecord):
        for output in record.outputs:
            if output.media_type.startswith("image/") and output.path.is_file():
                return output.path
        return self._service.history.source_path(record.id)

    async def cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        job_id = (context.args or [None])[0]
        is_admin = job_id is not None and await self._server.admins.of(message, update.effective_user)
        try:
            cancelled = await self._service.cancel(origin_of(message, update.effective_user), job_id, is_admin=is_admin)
        except Refusal as refusal:
            await outbox.reply(self._bot, message.chat.id, message.message_id, f"⚠️ {refusal}")
            return
        text = (
            f"✖️ Cancelled {len(cancelled)} job{'s' if len(cancelled) != 1 else ''}."
            if cancelled
            else "Nothing to cancel — you have no jobs waiting."
        )
        await outbox.reply(self._bot, message.chat.id, message.message_id, text)

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/forget: what it deletes, and a button to confirm (the confirmation is the core's)."""
        message = update.effective_message
        answer = await self._service.forget(origin_of(message, update.effective_user))
        button = InlineKeyboardButton("🗑 Yes, forget everything", callback_data=button_id(Button.forget, answer.code))
        await outbox.reply(
            self._bot,
            message.chat.id,
            message.message_id,
            f"This deletes all {answer.jobs} of your jobs, their pictures and your settings. Sure?",
            markup=InlineKeyboardMarkup([[button]]),
        )

    async def info(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        origin = origin_of(message, update.effective_user)
        arg = (context.args or [""])[0].strip().lower().lstrip("#")
        try:
            if arg and not JOB_ID.match(arg):
                raise Refusal("That isn't a job id. Its id is under each result: /info 3f9a0c1b2d4e")
            record = await self._service.info(origin, arg or None)
        except Refusal as refusal:
            await outbox.reply(self._bot, message.chat.id, message.message_id, str(refusal))
            return
        await outbox.reply(self._bot, message.chat.id, message.message_id, render.info_text(record), html=True)
