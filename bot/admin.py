"""``/server …``: the admin commands of a server or group, parsed and answered in the core.

Adapters check that the user is an admin there (Discord: the command group's
``default_member_permissions=manage_guild``; Telegram: ``getChatMember`` status creator or
administrator) and hand the rest of the line here; the answer is plain text to post.

    /server show                         the rules in force
    /server nsfw block|spoiler|allow
    /server ban WORD OR PHRASE           /server unban WORD OR PHRASE
    /server models NAME, NAME …          (or "all")
    /server limits n=2 size=768 steps=30 (0: the bot's own limit)
    /server quota N                      jobs per user per 24 h (0: none)
    /server cooldown SECONDS
    /server block USER_ID                /server unblock USER_ID
    /server channels add|remove CHANNEL_ID …   /server channels all   (Discord: where the bot answers)
    /server log [PAGE]
    /server style add NAME TEMPLATE WITH {prompt} [--no …] [--model …] [--strength …]
    /server style remove NAME
"""

from __future__ import annotations

import re
import time

from bot.history import LogEntry
from bot.jobs import Origin
from bot.policy import Rules
from bot.service import Refusal, Service

USAGE = (
    "Server settings: show · nsfw block|spoiler|allow · ban <words> · unban <words> · models <names>|all ·"
    " limits n=… size=… steps=… · quota <jobs a day> · cooldown <seconds> · block <user id> ·"
    " unblock <user id> · channels add|remove <channel>|all · log [page] · style add <name> <template> ·"
    " style remove <name>"
)
# what /help adds for a server's or group's admins (and for them only)
HELP = (
    "For admins here — /server …",
    "show: the rules in force",
    "nsfw block|spoiler|allow: what happens to pictures the content filter flags",
    "ban / unban <word or phrase>: refuse prompts that use it (whole words; case and accents ignored)",
    "models <names>|all: the models allowed here",
    "limits n=… size=… steps=…: caps on a job (0: the bot's own)",
    "quota <jobs a day> · cooldown <seconds>: per person",
    "block / unblock <user>: who may not use the bot here",
    "channels add|remove <#channel> · channels all: where the bot answers (Discord servers)",
    "style add <name> <template with {prompt}> · style remove <name>: this chat's own --style presets",
    "log [page]: the moderation log (refusals: who, why; no pictures)",
    "As an admin you can also cancel or delete anyone's job here.",
)
LIMITS = {"n": "max_num_images", "size": "max_size", "steps": "max_steps"}
LOG_PAGE = 10


async def server_command(service: Service, origin: Origin, text: str) -> str:
    """Run one ``/server`` line (without ``/server``) for an admin of ``origin``'s chat. Raises Refusal."""
    verb, _, rest = text.strip().partition(" ")
    verb, rest = verb.lower(), rest.strip()
    rules = await service.rules(origin)
    if verb in ("", "show"):
        return describe(rules)
    if verb == "style":
        return await style_command(service, origin, rest)
    if verb == "log":
        page = int(rest) - 1 if rest.isdigit() and int(rest) > 0 else 0
        entries = await service.moderation_log(origin, page=page, per_page=LOG_PAGE)
        return describe_log(entries, page)
    changes: dict[str, object]
    if verb == "nsfw":
        changes = {"nsfw": rest.lower()}
    elif verb in ("ban", "unban") and rest:
        kept = tuple(word for word in rules.banned if word.casefold() != rest.casefold())
        changes = {"banned": (*kept, rest) if verb == "ban" else kept}
    elif verb == "models" and rest:
        names = () if rest.lower() == "all" else tuple(n.strip() for n in rest.replace(",", " ").split())
        changes = {"models": names}
    elif verb == "limits" and rest:
        changes = {}
        for pair in rest.split():
            key, _, value = pair.partition("=")
            if key not in LIMITS or not value.isdigit():
                raise Refusal("Limits look like: n=2 size=768 steps=30 (0 for the bot's own).")
            changes[LIMITS[key]] = int(value)
    elif verb in ("quota", "cooldown") and rest.isdigit():
        changes = {"daily_quota" if verb == "quota" else "cooldown": int(rest)}
    elif verb == "channels" and rest:
        changes = {"channels": channels(origin, rules, rest)}
    elif verb in ("block", "unblock") and rest:
        kept = tuple(user for user in rules.blocked if user != rest)
        changes = {"blocked": (*kept, rest) if verb == "block" else kept}
    else:
        raise Refusal(USAGE)
    return "Saved. " + describe(await service.change_rules(origin, **changes))


def channels(origin: Origin, rules: Rules, text: str) -> tuple[str, ...]:
    """The answering channels after ``add <#id>…``, ``remove <#id>…`` or ``all`` (a Discord server's rule)."""
    if origin.platform != "discord":
        raise Refusal("Answering channels are a Discord server setting: a group is one chat.")
    how, _, rest = text.partition(" ")
    if how == "all":
        return ()
    ids = re.findall(r"\d{5,25}", rest)
    if how not in ("add", "remove") or not ids:
        raise Refusal("Channels look like: channels add #art · channels remove #art · channels all")
    kept = tuple(channel for channel in rules.channels if channel not in ids)
    return (*kept, *ids) if how == "add" else kept


STYLE_USAGE = (
    "Styles: style add NAME cinematic still of {prompt}, film grain --no cartoon --strength 0.5 ·"
    " style remove NAME (/styles lists them)"
)


async def style_command(service: Service, origin: Origin, text: str) -> str:
    """``style add NAME TEMPLATE…`` or ``style remove NAME``: the chat's own --style presets."""
    action, _, rest = text.partition(" ")
    name, _, template = rest.strip().partition(" ")
    if action.lower() == "add" and name and template.strip():
        style = await service.add_style(origin, name, template)
        return f"Saved the style {style.name}: {style.summary()}. Use it with --style {style.name}."
    if action.lower() == "remove" and name and not template.strip():
        await service.remove_style(origin, name)
        return f"Removed the style {name.lower()}."
    raise Refusal(STYLE_USAGE)


def describe(rules: Rules) -> str:
    def cap(value: int) -> str:
        return str(value) if value else "the bot's limit"

    lines = [
        f"NSFW: {rules.nsfw.value}",
        f"Banned words: {', '.join(rules.banned) or 'none'}",
        f"Models: {', '.join(rules.models) or 'all'}",
        f"Max n: {cap(rules.max_num_images)} · size: {cap(rules.max_size)} · steps: {cap(rules.max_steps)}",
        f"Daily quota: {rules.daily_quota or 'none'} · cooldown: {f'{rules.cooldown} s' if rules.cooldown else 'none'}",
        f"Blocked users: {', '.join(rules.blocked) or 'none'}",
        f"Answers in: {', '.join(f'<#{channel}>' for channel in rules.channels) or 'every channel'}",
    ]
    return "\n".join(lines)


def describe_log(entries: list[LogEntry], page: int) -> str:
    if not entries:
        return "Nothing in the moderation log." if page == 0 else "No more entries."
    lines = [f"Moderation log, page {page + 1} (newest first):"]
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.at))
        who = f"{entry.user_name} ({entry.user_id})" if entry.user_name else entry.user_id
        score = f" {entry.score:.2f}" if entry.score is not None else ""
        detail = f": {entry.detail}" if entry.detail else ""
        lines.append(f"{when} UTC · {who} · {entry.reason}{score}{detail}")
    return "\n".join(lines)
