"""Who may see and act on a job: the one access rule every button, command and action goes through.

A job is its owner's, and belongs to the chat (channel) where it was posted:

- anyone in that chat may see it and act on it (a new job from it is theirs);
- its owner may also reach it from their own private chat with the bot (where /history lives);
- nobody reaches it from any other chat, server or platform, and a job made in a private chat is
  seen by its owner alone, in that chat;
- cancelling or deleting it is for its owner, or an admin of the chat it was posted in (from there).

A button id can be forged by a modified client, so nothing is trusted but the platform's own
facts about the caller (``Origin``): who they are and where they are.
"""

from __future__ import annotations

from bot.jobs import Origin

NOT_HERE = "That result isn't available here."


def is_owner(owner: Origin, caller: Origin) -> bool:
    return owner.platform == caller.platform and owner.user_id == caller.user_id


def same_chat(posted: Origin, caller: Origin) -> bool:
    return (
        posted.platform == caller.platform
        and bool(posted.chat_id)
        and posted.chat_id == caller.chat_id
        and posted.guild_id == caller.guild_id
    )


def may_see(posted: Origin, caller: Origin) -> bool:
    """True when ``caller`` may see (and act on) the job that ``posted`` describes."""
    if posted.private or not posted.chat_id:  # a private chat (or none): its owner, there
        return is_owner(posted, caller) and posted.chat_id == caller.chat_id and posted.guild_id == caller.guild_id
    return same_chat(posted, caller) or (is_owner(posted, caller) and caller.private)


def may_delete(posted: Origin, caller: Origin, *, is_admin: bool) -> bool:
    """Deleting a result: its owner, or an admin of the chat it was posted in (never from elsewhere)."""
    return may_see(posted, caller) and (is_owner(posted, caller) or (is_admin and same_chat(posted, caller)))


def may_cancel(posted: Origin, caller: Origin, *, is_admin: bool) -> bool:
    """Cancelling a job: the same rule as deleting its result."""
    return may_delete(posted, caller, is_admin=is_admin)


def channel_allowed(allowed: tuple[tuple[int, int], ...], guild_id: int | None, channel_ids: set[int]) -> bool:
    """A Discord allow-list (``(server, channel)`` pairs; server 0: any server) for a server channel.

    Private chats are always allowed. A server with no pair is not restricted, unless a pair with
    server 0 exists (then every server is held to the listed channels). It never depends on what
    the bot can see: an unknown channel simply isn't allowed.
    """
    if guild_id is None or not allowed:
        return True
    listed = {channel for server, channel in allowed if server in (0, guild_id)}
    restricted = any(server in (0, guild_id) for server, _ in allowed)
    return not restricted or bool(listed & channel_ids)
