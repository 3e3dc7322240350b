"""The Discord client: app commands, persistent buttons, status messages, and the optional mention.

``run_discord(service)`` runs it until cancelled (``remixbot run`` starts it when DISCORD_TOKEN is
set, next to Telegram, in one process). ``build_client`` makes the client without starting it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands

from adapters.discord import commands, intake, render, server
from adapters.discord.buttons import HistoryButton, ResultButton, SettingsButton
from adapters.discord.status import StatusBoard
from bot.service import Refusal, Service
from bot.settings import Settings

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


class RemixBot(discord.Client):
    def __init__(
        self,
        service: Service,
        settings: Settings,
        *,
        status_interval: float = 1.5,
        sync_commands: bool = True,
        **options: Any,
    ):
        intents = discord.Intents.default()
        intents.message_content = settings.discord_message_content
        options.setdefault("allowed_mentions", NO_MENTIONS)
        super().__init__(intents=intents, **options)
        self.service = service
        self.settings = settings
        self.tree = app_commands.CommandTree(self)
        self.board = StatusBoard(self, service, interval=status_interval)
        self.sync_commands = sync_commands
        commands.register(self.tree, settings.limits)
        server.register(self.tree)
        # Listen at once, before login: jobs recovered at start may report before the gateway is up.
        service.listen("discord", self.board.on_event)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ResultButton, HistoryButton, SettingsButton)
        self.board.online.set()
        if self.sync_commands:
            await self.sync()

    async def sync(self) -> None:
        """Register the commands: on the DISCORD_GUILD_IDS servers at once (development), else globally."""
        try:
            if self.settings.discord_guild_ids:
                for guild_id in self.settings.discord_guild_ids:
                    guild = discord.Object(guild_id)
                    self.tree.copy_global_to(guild=guild)
                    await self.tree.sync(guild=guild)
            else:
                await self.tree.sync()
        except discord.HTTPException as error:
            log.warning("could not register the Discord commands: %s", error.text or error.status)

    async def on_ready(self) -> None:
        log.info("Discord: connected as %s (%s guilds)", self.user, len(self.guilds))
        unseen = [i for _, i in self.settings.discord_allowed_channels if self.get_channel(i) is None]
        if unseen:  # they stay allowed and nothing else opens up: the list never fails open
            log.warning("DISCORD_ALLOWED_CHANNELS lists channels I can't see: %s", ", ".join(map(str, unseen)))

    async def on_message(self, message: discord.Message) -> None:
        if not self.settings.discord_message_content or message.author.bot or self.user is None:
            return
        if not re.search(rf"<@!?{self.user.id}>", message.content):
            return
        try:
            await self.remix_mention(message)
        except Refusal as refusal:
            await self._reply(message, str(refusal))
        except Exception:
            log.exception("mention %s failed", message.id)
            await self._reply(message, render.SOMETHING_WRONG)

    async def remix_mention(self, message: discord.Message) -> None:
        """``@remixbot make it winter`` on an image, or in reply to one (needs the Message Content intent)."""
        guild_id = message.guild.id if message.guild else None
        if not intake.allowed_here(self, message.channel, guild_id):
            raise Refusal(render.NOT_HERE)
        source = message if intake.first_image(message) else await self._referenced(message)
        attachment = intake.first_image(source) if source is not None else None
        if source is None or attachment is None:
            raise Refusal("Reply to an image (or attach one) when you mention me, e.g. @remixbot make it winter.")
        problem = intake.attachment_problem(attachment, self.settings.limits)
        if problem:
            raise Refusal(problem)
        image = await intake.read(attachment)
        text = re.sub(rf"<@!?{self.user.id}>", " ", message.content).strip()
        origin = intake.origin_of(
            message.author,
            message.channel.id,
            guild_id,
            message.id,
            private=intake.is_dm(message.channel, guild_id),
            parent_id=getattr(message.channel, "parent_id", None),
        )
        parent_job, parent_output = await intake.lineage(self, origin, source, attachment)
        ticket = await intake.remix(
            self,
            origin=origin,
            channel=message.channel,
            text=text,
            image=image,
            reply_to=message,
            parent_job=parent_job,
            parent_output=parent_output,
        )
        if ticket.offer:
            await self._reply(message, render.acknowledged(ticket))

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    async def _reply(self, message: discord.Message, text: str) -> None:
        try:
            await message.reply(render.clip(text), mention_author=False, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            log.warning("could not reply to message %s: %s", message.id, error.text or error.status)

    async def close(self) -> None:
        await self.board.close()
        await super().close()


def build_client(service: Service, settings: Settings, **options: Any) -> RemixBot:
    """The Discord client for ``service``; ``options`` go to it (e.g. ``status_interval``)."""
    return RemixBot(service, settings, **options)


async def run_discord(service: Service) -> None:
    """Run the Discord adapter until cancelled."""
    settings = service.settings
    client = build_client(service, settings)
    async with client:
        try:
            await client.start(settings.discord_token.reveal())
        except discord.LoginFailure:
            log.error("Discord refused the token in DISCORD_TOKEN; the Discord adapter is not running")
        except discord.PrivilegedIntentsRequired:
            log.error(
                "DISCORD_MESSAGE_CONTENT is on but the Message Content intent isn't enabled for this bot "
                "(Developer Portal → Bot → Privileged Gateway Intents); the Discord adapter is not running"
            )
