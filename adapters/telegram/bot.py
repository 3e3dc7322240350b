"""The Telegram adapter's entry points: ``run_telegram(service)`` for ``remixbot run``, and
``build_application`` / ``polling`` (which the tests drive against a fake Bot API server).

``TELEGRAM_TOKEN`` is the only secret; it is revealed to PTB alone and scrubbed from the log
records of the HTTP client and PTB (which print request URLs, and URLs carry the token).
``TELEGRAM_BASE_URL`` / ``TELEGRAM_BASE_FILE_URL`` point at a self-hosted Bot API server, which
also lifts the 20 MB download cap (then ``REMIXBOT_MAX_IMAGE_BYTES`` is the only limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import BotCommand, BotCommandScopeAllChatAdministrators
from telegram.error import InvalidToken, TelegramError
from telegram.ext import AIORateLimiter, Application

from adapters.telegram import server
from adapters.telegram.commands import MENU, Commands
from adapters.telegram.delivery import Delivery
from adapters.telegram.handlers import on_error, routes
from adapters.telegram.inputs import BOT_API_DOWNLOAD_LIMIT, PLATFORM
from adapters.telegram.options import Options
from adapters.telegram.presses import Presses
from adapters.telegram.remixes import Remixes
from adapters.telegram.server import Admins, Server
from adapters.telegram.status import StatusBoard
from bot.service import Service
from bot.settings import Settings

log = logging.getLogger(__name__)

OFFICIAL_SERVER = "https://api.telegram.org/"
# Loggers that print Bot API URLs (which contain the token).
URL_LOGGERS = ("httpx", "httpcore", "telegram.Bot", "telegram.ext.ExtBot")


class TokenRejected(RuntimeError):
    """Telegram refused TELEGRAM_TOKEN (PTB's own error would print the token)."""


class TokenFilter(logging.Filter):
    """Replaces the bot token in log records with ***.

    The message is formatted here, once: PTB logs dicts that it changes afterwards (a file's
    path becomes a URL with the token), and a handler formatting later would see the change.
    """

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        record.msg, record.args = text.replace(self.token, "***"), None
        return True


def hide_token(token: str) -> None:
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenFilter) and f.token == token for f in logger.filters):
            logger.addFilter(TokenFilter(token))
    logging.getLogger("httpx").setLevel(max(logging.getLogger("httpx").level, logging.WARNING))


def download_limit(settings: Settings) -> int:
    """The largest picture fetched from Telegram: 20 MB on the official server."""
    if settings.telegram_base_url and not settings.telegram_base_url.startswith(OFFICIAL_SERVER):
        return settings.limits.max_image_bytes
    return min(BOT_API_DOWNLOAD_LIMIT, settings.limits.max_image_bytes)


def build_application(service: Service, settings: Settings, options: Options | None = None) -> Application:
    """A PTB Application wired to the service; it listens for the service's Telegram job events."""
    options = options or Options()
    token = settings.telegram_token.reveal()
    if not token:
        raise ValueError("TELEGRAM_TOKEN is not set")
    hide_token(token)
    builder = (
        Application.builder()
        .token(token)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=options.overall_max_rate,
                group_max_rate=options.group_max_rate,
                max_retries=options.max_retries,
            )
        )
        .concurrent_updates(options.concurrent_updates)
        .get_updates_read_timeout(options.poll_timeout + 10)
    )
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url)
    if settings.telegram_base_file_url:
        builder = builder.base_file_url(settings.telegram_base_file_url)
    application = builder.build()
    bot = application.bot
    board = StatusBoard(bot, service.history, options)
    delivery = Delivery(bot, service, board, options)
    service.listen(PLATFORM, delivery.on_event)
    remixes = Remixes(bot, service, board, options, download_limit(settings))
    admin = Server(bot, service, Admins(bot))
    commands = Commands(bot, service, options, admin)
    presses = Presses(bot, service, board, delivery, commands, admin.admins)
    application.add_handlers(routes(remixes, commands, presses, admin))
    application.add_error_handler(on_error)
    application.bot_data["albums"] = remixes.albums
    application.bot_data["poll_timeout"] = options.poll_timeout
    return application


async def register_commands(application: Application) -> None:
    """The command menu (setMyCommands). A failure here is logged, never fatal."""
    try:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in MENU])
        admins = [BotCommand(name, text) for name, text in (*MENU, *server.MENU)]
        await application.bot.set_my_commands(admins, scope=BotCommandScopeAllChatAdministrators())
    except TelegramError as error:
        log.warning("could not register the command menu: %s", error)


@contextlib.asynccontextmanager
async def polling(application: Application) -> AsyncIterator[Application]:
    """The application running (long polling getUpdates) for the duration of the block."""
    try:
        await application.initialize()
    except InvalidToken:
        raise TokenRejected("Telegram rejected TELEGRAM_TOKEN; check it with @BotFather.") from None
    try:
        await register_commands(application)
        await application.start()
        await application.updater.start_polling(
            timeout=application.bot_data["poll_timeout"], allowed_updates=["message", "callback_query"]
        )
        log.info("Telegram adapter running as @%s", application.bot.username)
        try:
            yield application
        finally:
            if application.updater.running:
                await application.updater.stop()
            await application.bot_data["albums"].close()
            if application.running:
                await application.stop()
    finally:
        await application.shutdown()


async def run_telegram(service: Service) -> None:
    """The Telegram adapter, until cancelled (``remixbot run`` runs it next to any others)."""
    application = build_application(service, service.settings)
    async with polling(application):
        await asyncio.Event().wait()
