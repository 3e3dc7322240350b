"""Private answers to an interaction, and the guard every handler runs under.

A handler's friendly refusal (``Refusal``) reaches the user as one ephemeral line; anything else
is logged with its traceback and the user gets one ephemeral "something went wrong" line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import discord

from adapters.discord import render
from bot.service import Refusal

log = logging.getLogger(__name__)


async def tell(interaction: discord.Interaction, text: str | None, **extra: Any) -> None:
    """An ephemeral line to whoever acted, whether or not the interaction was acknowledged yet."""
    text = render.clip(text) if text else None
    if interaction.response.is_done():
        # discord.py's Webhook.send types content as str, yet hands it to handle_message_parameters, which takes None
        await interaction.followup.send(
            text,  # type: ignore[arg-type]
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
            **extra,
        )
    else:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none(), **extra
        )


async def guarded(interaction: discord.Interaction, work: Awaitable[None]) -> None:
    """Run a handler; turn a Refusal or a failure into one ephemeral line."""
    try:
        await work
    except Refusal as refusal:
        await _tell_quietly(interaction, str(refusal))
    except Exception as error:
        await report(interaction, error)


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    if isinstance(error, Refusal):
        await _tell_quietly(interaction, str(error))
        return
    log.error("interaction %s (%s) failed", interaction.id, _what(interaction), exc_info=error)
    await _tell_quietly(interaction, render.SOMETHING_WRONG)


async def _tell_quietly(interaction: discord.Interaction, text: str) -> None:
    try:
        await tell(interaction, text)
    except discord.HTTPException as error:  # the token may have expired; nothing more to do
        log.warning("could not answer interaction %s: %s", interaction.id, error.text or error.status)


def _what(interaction: discord.Interaction) -> str:
    data: Mapping[str, object] = interaction.data or {}
    return str(data.get("name") or data.get("custom_id") or interaction.type.name)
