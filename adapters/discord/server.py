"""``/server …`` on Discord: the admin command group, ``/help``, and who counts as a server admin.

The group is registered with ``default_member_permissions`` Manage Server and only in servers, so
Discord shows it to those members only. A server owner can change who sees a command (Server
Settings → Integrations), so each invocation checks the member's permissions again here
(``interaction.permissions``: what Discord computed for this member in this channel). The options
are turned into the core's ``/server`` line and ``bot.admin`` answers it; the answer is ephemeral.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from adapters.discord import answers, intake, render
from bot import admin
from bot.flags import SYNTAX
from bot.service import Refusal

if TYPE_CHECKING:
    from adapters.discord.bot import RemixBot

NOT_ADMIN = "Only members with the Manage Server permission can change this server's settings."
HELP = (
    "**remixbot** remixes pictures.\n"
    "• `/remix` an image with a prompt (every option is listed as you type), or right-click a message → "
    "Apps → Remix.\n"
    "• Under each result: reroll, variations, upscale, fix face, animate, info, before/after, delete.\n"
    "• `/models` · `/styles` · `/loras` · `/settings` (your defaults) · `/history` · `/info <job>` · `/cancel` ·"
    " `/forget`"
)


def is_admin(interaction: discord.Interaction) -> bool:
    """The member may manage this server (Manage Server or Administrator), as Discord says in this interaction."""
    if interaction.guild_id is None:
        return False
    permissions = interaction.permissions
    return permissions.manage_guild or permissions.administrator


def help_text(admin_here: bool) -> str:
    head, *syntax = SYNTAX
    text = HELP + f"\n\n**{head}**\n" + "\n".join(f"• {render.escape(line)}" for line in syntax)
    if admin_here:
        head, *verbs = admin.HELP
        lines = [f"**{head}**", *(f"• {line}" for line in verbs)]  # the core's own text: nothing to escape
        text += "\n\n" + "\n".join(lines)
    return text


group = app_commands.Group(
    name="server",
    description="This server's rules for the bot (Manage Server)",
    guild_only=True,
    default_permissions=discord.Permissions(manage_guild=True),
)


async def answer(interaction: discord.Interaction, line: str) -> None:
    """Run one ``/server`` line for an admin and show the answer to them alone."""
    if not is_admin(interaction):
        raise Refusal(NOT_ADMIN)
    bot: RemixBot = interaction.client  # type: ignore[assignment]
    await interaction.response.defer(ephemeral=True, thinking=True)
    text = await admin.server_command(bot.service, intake.origin_of_interaction(interaction), line)
    await answers.tell(interaction, code_block(text))


def code_block(text: str) -> str:
    """The core's plain answer as a code block: users' words (banned phrases, names) stay inert and readable."""
    return "```\n" + render.clip(text.replace("`", "ˋ"), render.MAX_CONTENT - 8) + "\n```"


@group.command(name="show", description="The rules in force here")
async def show(interaction: discord.Interaction) -> None:
    await answer(interaction, "show")


@group.command(name="nsfw", description="What happens to pictures the content filter flags")
@app_commands.describe(policy="block: held back · spoiler: behind a spoiler · allow (age-restricted channels only)")
async def nsfw(interaction: discord.Interaction, policy: Literal["block", "spoiler", "allow"]) -> None:
    await answer(interaction, f"nsfw {policy}")


@group.command(name="ban", description="Refuse prompts that use a word or phrase")
@app_commands.describe(words="A word or phrase (whole words; case and accents don't matter)")
async def ban(interaction: discord.Interaction, words: app_commands.Range[str, 1, 100]) -> None:
    await answer(interaction, f"ban {words.strip()}")


@group.command(name="unban", description="Take a word or phrase off the ban list")
@app_commands.describe(words="The word or phrase, as it is on the list")
async def unban(interaction: discord.Interaction, words: app_commands.Range[str, 1, 100]) -> None:
    await answer(interaction, f"unban {words.strip()}")


@group.command(name="models", description="The models allowed here")
@app_commands.describe(names="Model names, comma-separated, or all")
async def models(interaction: discord.Interaction, names: app_commands.Range[str, 1, 300]) -> None:
    await answer(interaction, f"models {names.strip()}")


@models.autocomplete("names")
async def model_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The names typed so far plus one more from the registry (or ``all``), completing the last one."""
    bot: RemixBot = interaction.client  # type: ignore[assignment]
    typed, _, last = current.rpartition(",")
    chosen = [name.strip() for name in typed.split(",") if name.strip()]
    last = last.strip().lower()
    values = [] if chosen or (last and last not in "all") else ["all"]
    values += [
        ", ".join([*chosen, name])
        for name in bot.service.models.names()
        if name not in chosen and (not last or last in name.lower())
    ]
    return [app_commands.Choice(name=value[:100], value=value[:100]) for value in values][:25]


@group.command(name="limits", description="Caps on one job here (0: the bot's own)")
@app_commands.describe(n="Images per job", size="Longest side in pixels", steps="Inference steps")
async def limits(
    interaction: discord.Interaction,
    n: app_commands.Range[int, 0, 100] | None = None,
    size: app_commands.Range[int, 0, 100000] | None = None,
    steps: app_commands.Range[int, 0, 1000] | None = None,
) -> None:
    given = [f"{key}={value}" for key, value in (("n", n), ("size", size), ("steps", steps)) if value is not None]
    await answer(interaction, "limits " + " ".join(given))


@group.command(name="quota", description="Jobs one person may start here in 24 hours (0: no quota)")
async def quota(interaction: discord.Interaction, jobs: app_commands.Range[int, 0, 100000]) -> None:
    await answer(interaction, f"quota {jobs}")


@group.command(name="cooldown", description="Seconds between one person's jobs here (0: none)")
async def cooldown(interaction: discord.Interaction, seconds: app_commands.Range[int, 0, 86400]) -> None:
    await answer(interaction, f"cooldown {seconds}")


@group.command(name="block", description="Stop a member from using the bot here")
async def block(interaction: discord.Interaction, member: discord.User) -> None:
    await answer(interaction, f"block {member.id}")


@group.command(name="unblock", description="Let a blocked member use the bot here again")
async def unblock(interaction: discord.Interaction, member: discord.User) -> None:
    await answer(interaction, f"unblock {member.id}")


@group.command(name="channels", description="Where the bot answers on this server")
@app_commands.describe(
    action="add or remove a channel, or all: answer everywhere again", where="The channel to add or remove"
)
async def channels(
    interaction: discord.Interaction,
    action: Literal["add", "remove", "all"],
    where: app_commands.AppCommandChannel | None = None,
) -> None:
    if action != "all" and where is None:
        raise Refusal("Pick the channel to add or remove.")
    await answer(interaction, f"channels {action} {where.id if where is not None else ''}".strip())


@group.command(name="log", description="The moderation log: refusals here, newest first")
async def log(interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1) -> None:
    await answer(interaction, f"log {page}")


@app_commands.command(name="help", description="How to use the bot")
async def help_command(interaction: discord.Interaction) -> None:
    await answers.tell(interaction, help_text(is_admin(interaction)))


def register(tree: app_commands.CommandTree) -> None:
    tree.add_command(group)
    tree.add_command(help_command)
