"""A server's (or group chat's) rules, and the checks every job goes through before it is queued.

Where rules live: a Discord server, a Telegram group or channel each have one ``Rules`` (stored in
the history, set by their admins, applied at once); a private chat has the operator's limits and the
user's own NSFW setting (``block`` unless they changed it). The operator's configuration adds a ban
list and blocked users that hold everywhere, and the rules a new server starts with.

Ban-list matching is on whole words and phrases, case- and accent-insensitive: both sides are
NFKD-decomposed, stripped of combining marks and casefolded, and everything that is not a letter or
a digit separates words ("Café" bans "cafe" and "CAFÉ", not "cafeteria").
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from bot.jobs import Origin, Request


class Nsfw(enum.StrEnum):
    """What happens to a picture the classifier flags."""

    block = "block"  # refused (a source) or held back (a result); the default in servers and groups
    spoiler = "spoiler"  # posted behind a spoiler
    allow = "allow"  # posted as it is (on Discord still only in age-restricted channels)


@dataclass(frozen=True)
class Rules:
    """One server's or group chat's settings. Zero and empty mean "no rule of the server's own"."""

    nsfw: Nsfw = Nsfw.block
    banned: tuple[str, ...] = ()  # words and phrases refused in prompts
    models: tuple[str, ...] = ()  # the models allowed; empty: all
    max_num_images: int = 0
    max_size: int = 0
    max_steps: int = 0
    daily_quota: int = 0  # jobs per user in 24 hours
    cooldown: int = 0  # seconds between one user's jobs
    blocked: tuple[str, ...] = ()  # platform user ids that may not use the bot here
    channels: tuple[str, ...] = ()  # Discord channel ids where the bot answers in this server; empty: all

    def to_data(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], base: Rules | None = None) -> Rules:
        """Rules from stored data; fields it lacks come from ``base`` (unknown keys are ignored)."""
        rules = base or cls()
        known = {f.name: f for f in fields(cls)}
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue
            if name == "nsfw":
                changes[name] = Nsfw(value)
            elif isinstance(getattr(rules, name), tuple):
                changes[name] = tuple(str(item) for item in value)
            else:
                changes[name] = int(value)
        return replace(rules, **changes)


@dataclass(frozen=True)
class Operator:
    """The operator's word, from configuration: it holds in every chat."""

    banned: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()  # "platform:user_id"
    server_defaults: Rules = Rules()  # what a server or group starts with


@dataclass(frozen=True)
class Breach:
    """Why a job is refused: ``reason`` for the moderation log, ``message`` for the user."""

    reason: str  # "blocked", "banned", "model", "limit", "cooldown", "quota", "classifier"
    message: str
    detail: str = ""  # what matched (a banned phrase, a model), for the log only
    score: float | None = None


def scope(origin: Origin) -> str | None:
    """The key of the rules that hold where ``origin`` is; None in a private chat."""
    if origin.platform == "discord" and origin.guild_id:
        return f"discord:{origin.guild_id}"
    if origin.platform == "telegram" and origin.chat_id and origin.chat_id != origin.user_id:
        return f"telegram:{origin.chat_id}"  # a group, supergroup or channel (a private chat's id is the user's)
    return None


def normalise(text: str) -> str:
    """Words of ``text`` without accents or case, one space apart."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in plain).split())


def banned_phrase(texts: Iterable[str], banned: Iterable[str]) -> str | None:
    """The first banned word or phrase found whole in any of ``texts``, else None."""
    haystacks = [f" {normalise(text)} " for text in texts if text]
    for phrase in banned:
        needle = normalise(phrase)
        if needle and any(f" {needle} " in haystack for haystack in haystacks):
            return phrase
    return None


def check_request(rules: Rules, operator: Operator, origin: Origin, request: Request) -> Breach | None:
    """The first rule a job breaks (before counting quota and cooldown), else None."""
    if f"{origin.platform}:{origin.user_id}" in operator.blocked or origin.user_id in rules.blocked:
        return Breach("blocked", "You can't use the bot here.")
    if rules.channels and not {origin.chat_id, origin.parent_id} & set(rules.channels):
        where = ", ".join(f"<#{channel}>" for channel in rules.channels)  # Discord shows these as channel links
        return Breach("channel", f"I only answer in {where} on this server.", origin.chat_id)
    phrase = banned_phrase((request.prompt, request.negative_prompt), (*operator.banned, *rules.banned))
    if phrase is not None:
        return Breach("banned", "Your prompt uses a word that isn't allowed here. Please rephrase it.", phrase)
    if rules.models and request.model not in rules.models:
        allowed = ", ".join(rules.models)
        return Breach("model", f"The model {request.model} isn't allowed here. Allowed: {allowed}.", request.model)
    for name, value, cap in (
        ("n", request.num_images_per_prompt, rules.max_num_images),
        ("size", request.size or 0, rules.max_size),
        ("steps", request.num_inference_steps or 0, rules.max_steps),
    ):
        if cap and value > cap:
            return Breach("limit", f"--{name} is at most {cap} here (you asked for {value}).", f"{name}={value}")
    return None


def check_pace(rules: Rules, recent: list[float], now: float) -> Breach | None:
    """Cooldown and daily quota, from the creation times of the user's jobs here in the last 24 hours."""
    if rules.cooldown and recent:
        wait = rules.cooldown - (now - max(recent))
        if wait > 0:
            return Breach("cooldown", f"One moment — a new job here in {int(wait) + 1} s.")
    if rules.daily_quota and len(recent) >= rules.daily_quota:
        hours = (min(recent) + 86400 - now) / 3600
        return Breach(
            "quota",
            f"You've used today's {rules.daily_quota} jobs here; more in about {max(1, round(hours))} h.",
            f"{len(recent)} jobs",
        )
    return None


def may_post(flagged: bool, platform: str, age_restricted: bool) -> bool:
    """Whether a result may be posted in a channel: on Discord a flagged one only in an age-restricted
    channel (``channel.nsfw``), whatever the server's policy (Discord's developer policy)."""
    return not (flagged and platform == "discord" and not age_restricted)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value
