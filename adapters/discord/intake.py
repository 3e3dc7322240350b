"""The one way a job starts from Discord, whichever way the user came in.

``/remix``, the "Apps → Remix" modal, a mention and the buttons under a result all end here:
check the channel and the model, hand the request to the service, and post the job's status
message in the channel (with the bot token, so it can still be edited after the 15-minute
interaction token has expired, and after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Mapping
from typing import TYPE_CHECKING

import discord

from adapters.discord import render
from bot.access import channel_allowed
from bot.actions import Press, parse_button
from bot.flags import Given
from bot.jobs import Origin
from bot.service import Refusal, Ticket
from bot.settings import Limits

if TYPE_CHECKING:
    from adapters.discord.bot import RemixBot

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif")


def origin_of(
    user: discord.abc.User,
    channel_id: int | None,
    guild_id: int | None,
    message_id: int | None = None,
    *,
    private: bool = False,
    parent_id: int | None = None,
) -> Origin:
    return Origin(
        platform="discord",
        user_id=str(user.id),
        chat_id=str(channel_id or ""),
        user_name=user.display_name,
        guild_id=str(guild_id or ""),
        message_id=str(message_id or ""),
        private=private,
        parent_id=str(parent_id or ""),
    )


def is_dm(channel: object, guild_id: int | None) -> bool:
    """The user's own chat with the bot (not a server channel, not a group DM)."""
    return guild_id is None and not isinstance(channel, discord.GroupChannel)


def origin_of_interaction(interaction: discord.Interaction) -> Origin:
    message = interaction.message
    return origin_of(
        interaction.user,
        interaction.channel_id,
        interaction.guild_id,
        message.id if message is not None else None,
        private=is_dm(interaction.channel, interaction.guild_id),
        parent_id=getattr(interaction.channel, "parent_id", None),
    )


def allowed_here(bot: RemixBot, channel: object, guild_id: int | None) -> bool:
    """Jobs may start in DMs, and in the server channels DISCORD_ALLOWED_CHANNELS allows (threads
    follow their channel): the core's rule, which never depends on what the bot can see."""
    here = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
    return channel_allowed(bot.settings.discord_allowed_channels, guild_id, {int(i) for i in here if i is not None})


def is_image(attachment: discord.Attachment) -> bool:
    kind = attachment.content_type or mimetypes.guess_type(attachment.filename)[0] or ""
    return kind.split(";")[0].strip().startswith("image/") or (
        not attachment.content_type and attachment.filename.lower().endswith(IMAGE_SUFFIXES)
    )


def attachment_problem(attachment: discord.Attachment, limits: Limits) -> str | None:
    """Why an attachment can't be a source image, judged from its metadata alone (or None)."""
    if not is_image(attachment):
        return f"{render.safe(attachment.filename, 80)} isn't an image; send a PNG, JPEG, WebP or GIF."
    if attachment.size > limits.max_image_bytes:
        return (
            f"{render.safe(attachment.filename, 80)} is too big ({render.mb(attachment.size)}); "
            f"the limit is {render.mb(limits.max_image_bytes)}."
        )
    return None


def first_image(message: discord.Message) -> discord.Attachment | None:
    return next((a for a in message.attachments if is_image(a)), None)


async def read(attachment: discord.Attachment) -> bytes:
    """The attachment's bytes, fetched now: CDN links expire."""
    try:
        return await attachment.read()
    except (discord.HTTPException, OSError) as error:
        log.warning("could not download attachment %s: %s", attachment.id, error)
        raise Refusal("I couldn't download that image from Discord; please try again.") from None


def parent_of(message: discord.Message, attachment: discord.Attachment) -> tuple[str | None, int | None]:
    """When ``message`` is one of our results: its job, and which of its images is ``attachment``."""
    for row in message.components:
        for component in getattr(row, "children", []):
            press = parse_button(getattr(component, "custom_id", None) or "")
            if press is not None:
                images = [a for a in message.attachments if is_image(a)]
                index = next((i for i, a in enumerate(images) if a.id == attachment.id), None)
                return press.job_id, index
    return None, None


async def lineage(
    bot: RemixBot, origin: Origin, message: discord.Message, attachment: discord.Attachment
) -> tuple[str | None, int | None]:
    """The result (job, image) an image comes from, when it is one of ours that ``origin`` may see."""
    parent_job, parent_output = parent_of(message, attachment)
    if parent_job is None:
        return None, None
    try:
        await bot.service.job(origin, parent_job)
    except Refusal:
        return None, None  # someone else's, or gone: no lineage to record
    return parent_job, parent_output


async def remix(
    bot: RemixBot,
    *,
    origin: Origin,
    channel: discord.abc.Messageable,
    text: str,
    image: bytes,
    options: Mapping[str, Given] | None = None,
    references: tuple[bytes, ...] = (),
    reply_to: discord.Message | None = None,
    parent_job: str | None = None,
    parent_output: int | None = None,
    upload_limit: int | None = None,
) -> Ticket:
    """Submit a remix and post a status message per job. Raises Refusal."""
    ticket = await bot.service.submit(
        origin, text, image, references, parent_job=parent_job, parent_output=parent_output, options=options
    )
    await post(bot, ticket, origin, channel, reply_to, upload_limit)
    return ticket


async def act(
    bot: RemixBot,
    *,
    origin: Origin,
    channel: discord.abc.Messageable,
    press: Press,
    reply_to: discord.Message | None = None,
    upload_limit: int | None = None,
) -> Ticket:
    """The job a result button makes; its status message answers the result. Raises Refusal."""
    ticket = await bot.service.act(origin, press)
    await post(bot, ticket, origin, channel, reply_to, upload_limit)
    return ticket


async def post(
    bot: RemixBot,
    ticket: Ticket,
    origin: Origin,
    channel: discord.abc.Messageable,
    reply_to: discord.Message | None,
    upload_limit: int | None,
) -> None:
    try:
        for job in ticket.jobs:
            await bot.board.post(job, channel, ticket.position, reply_to=reply_to, upload_limit=upload_limit)
    except discord.HTTPException as error:
        log.warning("could not post a status message in channel %s: %s", origin.chat_id, error.text or error.status)
        for job in ticket.jobs:
            bot.board.abandon(job.id)
        await asyncio.gather(*(bot.service.cancel(origin, job.id) for job in ticket.jobs), return_exceptions=True)
        raise Refusal(
            "I can't post in this channel, so I cancelled the job. "
            "A server admin can give me Send Messages and Attach Files here."
        ) from None
