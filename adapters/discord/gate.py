"""Which results may be shown in a Discord channel, and as spoilers or not.

Discord's developer policy keeps adult content in age-restricted channels, so a result the content
classifier flagged is only ever shown where the channel says ``nsfw`` (a thread: its parent's), whatever
the server's NSFW policy (``bot.policy.may_post``). A channel the bot can't see, a DM or a group DM
counts as not age-restricted. What the chat's policy wants behind a spoiler is stored with the output
(``OutputRecord.spoiler``) and uploaded with ``spoiler=True``.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord

from bot.history import OutputRecord
from bot.policy import may_post

PLATFORM = "discord"
HELD_BACK = (
    "The content filter flagged {count} here, so it isn't shown in this channel: "
    "flagged pictures only appear in age-restricted channels."
)


def age_restricted(client: discord.Client, channel_id: int) -> bool:
    """Whether the channel is age-restricted, as the bot's cache knows it (unknown: no)."""
    channel = client.get_channel(channel_id)
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def split(outputs: Iterable[OutputRecord], restricted: bool) -> tuple[list[OutputRecord], list[OutputRecord]]:
    """The outputs that may be shown in a channel (``restricted``: it is age-restricted), and those held back."""
    shown: list[OutputRecord] = []
    held: list[OutputRecord] = []
    for output in outputs:
        (shown if may_post(output.flagged, PLATFORM, restricted) else held).append(output)
    return shown, held


def held_back(count: int) -> str:
    """The calm line shown instead of ``count`` flagged results."""
    return HELD_BACK.format(count="one result" if count == 1 else f"{count} results")


def named(filename: str, spoiler: bool) -> str:
    """A file name Discord shows behind a spoiler when ``spoiler`` (what ``discord.File(spoiler=True)`` does)."""
    return f"SPOILER_{filename}" if spoiler and not filename.startswith("SPOILER_") else filename
