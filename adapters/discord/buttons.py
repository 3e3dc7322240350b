"""The buttons: under results and status messages, on /history pages and on /settings.

Every button is a discord.py ``DynamicItem``: its state lives in its custom_id and everything else
is looked up in the history, so buttons keep working after a restart without any in-memory view.

- ``ResultButton`` — the core vocabulary (``bot.actions``): ``reroll:<job>``, ``upscale:<job>:<i>``,
  ``info:<job>``, ``delete:<job>``, ``cancel:<job>``, ``source:<job>:0`` (Before/after: one button
  for the whole result, answered privately with a sheet per image)…
- ``HistoryButton`` — ``hist:<page>``, paging through the presser's own jobs.
- ``SettingsButton`` — ``set:<key>:<value>``, changing the presser's own defaults.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord import answers, gate, intake, render, server
from bot.actions import DISCORD_TEMPLATE, MORE_ROWS, Button, Press, parse_button
from bot.flags import number
from bot.history import JobRecord
from bot.jobs import Origin
from bot.presenter import LABELS
from bot.requests import Defaults
from bot.service import Refusal

if TYPE_CHECKING:
    from adapters.discord.bot import RemixBot

MAX_IMAGE_ROWS = 4  # 4 rows of per-image buttons + the last row = Discord's 5 rows
PER_IMAGE = (Button.upscale, Button.fixface, Button.animate, Button.vary, Button.varystrong)
STRENGTHS = ("auto", "0.35", "0.5", "0.65", "0.8")
SETTING_VALUE = re.compile(r"[A-Za-z0-9_.\-]{1,80}")


class ResultButton(discord.ui.DynamicItem[discord.ui.Button], template=DISCORD_TEMPLATE):
    def __init__(
        self,
        press: Press,
        *,
        label: str | None = None,
        emoji: Any = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ):
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=press.id), row=row)
        self.press = press

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item, match: re.Match[str], /
    ) -> ResultButton:
        button = item if isinstance(item, discord.ui.Button) else None
        return cls(
            parse_button(match.string),
            label=button.label if button else None,
            emoji=button.emoji if button else None,
            style=button.style if button else discord.ButtonStyle.secondary,
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        await answers.guarded(interaction, handle_press(interaction, self.press))


class HistoryButton(discord.ui.DynamicItem[discord.ui.Button], template=r"hist:(?P<page>[0-9]{1,4})"):
    def __init__(self, page: int, label: str = "", row: int | None = None):
        super().__init__(discord.ui.Button(label=label or f"Page {page + 1}", custom_id=f"hist:{page}"), row=row)
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item, match: re.Match[str], /
    ) -> HistoryButton:
        return cls(int(match["page"]), getattr(item, "label", "") or "")

    async def callback(self, interaction: discord.Interaction) -> None:
        await answers.guarded(interaction, turn_page(interaction, self.page))


class SettingsButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"set:(?P<key>model|n|strength):(?P<value>[A-Za-z0-9_.\-]{1,80})",
):
    def __init__(self, key: str, value: str, *, label: str, selected: bool = False, row: int | None = None):
        style = discord.ButtonStyle.primary if selected else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"set:{key}:{value}"), row=row)
        self.key, self.value = key, value

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item, match: re.Match[str], /
    ) -> SettingsButton:
        return cls(match["key"], match["value"], label=getattr(item, "label", "") or match["value"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await answers.guarded(interaction, change_setting(interaction, self.key, self.value))


# views -----------------------------------------------------------------------------------------


def forget_view(code: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    confirm = Press(Button.forget, code)
    view.add_item(ResultButton(confirm, label="Yes, forget everything", emoji="🗑", style=discord.ButtonStyle.danger))
    return view


def status_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(labelled(Press(Button.cancel, job_id), row=0))
    return view


def result_view(record: JobRecord) -> discord.ui.View:
    """Per image a row [Upscale n] [Fix face n] [Animate n] [Vary n] [Strong vary n], then
    [Reroll] [Info] [Delete] [Before/after] [More]: at most 5 rows of 5. A clip gets the last row only,
    without Before/after (a comparison of pictures) and More. ➕ More answers the presser alone with
    the rest of an image's buttons (``more_view``): Zoom out, Pan and Cut out."""
    view = discord.ui.View(timeout=None)
    images = [o for o in record.outputs if render.is_still(o.media_type)][:MAX_IMAGE_ROWS]
    for row, output in enumerate(images):
        for button in PER_IMAGE:
            view.add_item(labelled(Press(button, record.id, output.index), row=row, number=output.index + 1))
    add_last_row(view, record.id, len(images), before_after=bool(images))
    return view


def failed_view(record: JobRecord) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    add_last_row(view, record.id, 0)
    return view


def add_last_row(view: discord.ui.View, job_id: str, row: int, *, before_after: bool = False) -> None:
    view.add_item(labelled(Press(Button.reroll, job_id), row=row))
    view.add_item(labelled(Press(Button.info, job_id), row=row))
    view.add_item(labelled(Press(Button.delete, job_id), row=row, style=discord.ButtonStyle.danger))
    if before_after:  # one for the whole result: the per-image rows have no room left
        view.add_item(labelled(Press(Button.source, job_id, 0), row=row))
        view.add_item(labelled(Press(Button.more, job_id, 0), row=row))


def more_view(record: JobRecord, index: int) -> discord.ui.View:
    """The rest of image ``index``'s buttons, by the core's MORE_ROWS ([Zoom out 1.5×] [Zoom out 2×]
    [Cut out], [Pan left] [Pan right] [Pan up] [Pan down]); with several images, a last row of
    [More n] for each other one."""
    view = discord.ui.View(timeout=None)
    for row, buttons in enumerate(MORE_ROWS):
        for button in buttons:
            view.add_item(labelled(Press(button, record.id, index), row=row))
    others = [o.index for o in record.outputs if render.is_still(o.media_type) and o.index != index]
    for other in others[:MAX_IMAGE_ROWS]:
        view.add_item(labelled(Press(Button.more, record.id, other), row=len(MORE_ROWS), number=other + 1))
    return view


def labelled(
    press: Press, *, row: int, number: int | None = None, style: discord.ButtonStyle = discord.ButtonStyle.secondary
) -> ResultButton:
    """A button with the core's label (and the image's number, on a per-image button)."""
    label = LABELS[press.button]
    text = label.text if number is None else f"{label.text} {number}"
    return ResultButton(press, label=text, emoji=label.emoji, style=style, row=row)


def history_view(records: list[JobRecord], page: int, has_next: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for position, record in enumerate(records[: render.MAX_PER_PAGE], start=1):
        view.add_item(
            ResultButton(Press(Button.reroll, record.id), label=str(position), emoji=LABELS[Button.reroll].emoji, row=0)
        )
    if page > 0:
        view.add_item(HistoryButton(page - 1, "◀ Newer", row=1))
    if has_next:
        view.add_item(HistoryButton(page + 1, "Older ▶", row=1))
    return view


async def settings_page(bot: RemixBot, defaults: Defaults) -> tuple[str, discord.ui.View]:
    """The /settings page: the defaults, and buttons for the models that can run here."""
    availability = await bot.service.availability()
    names = [name for name in bot.service.models.names() if availability.get(name) is None or name == defaults.model]
    return render.settings(defaults), settings_view(defaults, names, bot.settings.limits.max_num_images)


def settings_view(defaults: Defaults, models: list[str], max_images: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    names = [name for name in models if SETTING_VALUE.fullmatch(name)][:10]
    for i, name in enumerate(names):
        view.add_item(SettingsButton("model", name, label=name, selected=name == defaults.model, row=i // 5))
    row = 2 if len(names) > 5 else 1
    for n in range(1, min(max_images, MAX_IMAGE_ROWS) + 1):
        view.add_item(
            SettingsButton(
                "n",
                str(n),
                label=f"{n} image{'s' if n > 1 else ''}",
                selected=n == defaults.num_images_per_prompt,
                row=row,
            )
        )
    current = "auto" if defaults.strength is None else number(defaults.strength)
    for value in STRENGTHS:
        label = "strength: model default" if value == "auto" else f"strength {value}"
        view.add_item(SettingsButton("strength", value, label=label, selected=value == current, row=row + 1))
    return view


# what the buttons do ---------------------------------------------------------------------------


async def handle_press(interaction: discord.Interaction, press: Press) -> None:
    """A result or status button: a deferred update first, then the job, the info or the deletion."""
    bot: RemixBot = interaction.client  # type: ignore[assignment]
    await interaction.response.defer()
    origin = intake.origin_of_interaction(interaction)
    if press.button is Button.info:
        await answers.tell(interaction, render.info(await bot.service.info(origin, press.job_id)))
    elif press.button is Button.source:
        await show_before_after(interaction, bot, origin, press.job_id)
    elif press.button is Button.more:
        await show_more(interaction, bot, origin, press)
    elif press.button is Button.delete:
        await delete(interaction, bot, origin, press.job_id)
    elif press.button is Button.forget:  # its "job" is the confirmation code
        answer = await bot.service.forget(origin, press.job_id)
        await answers.tell(interaction, f"🗑 Forgotten: {answer.jobs} job(s), their pictures and your settings.")
    elif press.button is Button.cancel:
        cancelled = await bot.service.cancel(origin, press.job_id, is_admin=server.is_admin(interaction))
        await answers.tell(interaction, "Cancelled." if cancelled else "That job has already finished.")
    elif press.button.action is None:
        raise Refusal("That button doesn't do anything here.")
    else:
        if not intake.allowed_here(bot, interaction.channel, interaction.guild_id):
            raise Refusal(render.NOT_HERE)
        message = interaction.message
        reply_to = message if message is not None and not message.flags.ephemeral else None
        await intake.act(
            bot,
            origin=origin,
            channel=interaction.channel,
            press=press,
            reply_to=reply_to,
            upload_limit=interaction.filesize_limit,
        )


async def show_more(interaction: discord.Interaction, bot: RemixBot, origin: Origin, press: Press) -> None:
    """➕ More: Zoom out, Pan and Cut out for one image, for the presser's eyes only (the result's own
    rows are full). Pressing one makes the job in this channel, like any result button."""
    record = await bot.service.job(origin, press.job_id)
    pictures = [o.index for o in record.outputs if render.is_still(o.media_type)]
    if press.index not in pictures:
        raise Refusal("That result isn't ready (or has no such image).")
    which = f" image {press.index + 1} of" if len(pictures) > 1 else ""
    await answers.tell(interaction, f"More for{which} job `{record.id}`:", view=more_view(record, press.index))


async def show_before_after(interaction: discord.Interaction, bot: RemixBot, origin: Origin, job_id: str) -> None:
    """The before | after sheet of each of the result's images, for the presser's eyes only.

    A picture, never a job: it goes through ``Service.before_after``, not ``Service.act``.
    """
    record = await bot.service.job(origin, job_id)
    restricted = gate.age_restricted(bot, interaction.channel_id or 0)
    shown, held = gate.split(record.outputs, restricted)
    if held and not shown:
        raise Refusal(gate.held_back(len(held)))
    stills = [o for o in shown if render.is_still(o.media_type)]
    spoilers = {o.index for o in stills if o.spoiler}
    indexes = [o.index for o in stills] or [0]
    pictures = [
        (
            gate.named(f"before-after-{record.id}-{index + 1}.png", index in spoilers),
            await bot.service.before_after(origin, record.id, index),
        )
        for index in indexes
    ]
    uploads = await asyncio.to_thread(render.fit_pictures, pictures, interaction.filesize_limit)
    await answers.tell(interaction, render.before_after(record, indexes), files=render.files(uploads))


async def delete(interaction: discord.Interaction, bot: RemixBot, origin: Origin, job_id: str) -> None:
    """🗑 Delete: the core decides (owner, or a server admin; only the job's own message) and deletes
    the files; the message the button is on goes here."""
    message = interaction.message
    permissions = interaction.permissions
    is_admin = server.is_admin(interaction) or (interaction.guild_id is not None and permissions.manage_messages)
    at = f"{message.channel.id}:{message.id}" if message is not None and not message.flags.ephemeral else None
    await bot.service.delete(origin, job_id, message_at=at, is_admin=is_admin)
    if message is not None:
        await message.delete()


async def history_page(bot: RemixBot, origin: Origin, page: int) -> tuple[str, discord.ui.View]:
    records = await bot.service.jobs(origin, page=page, per_page=render.MAX_PER_PAGE)
    has_next = bool(records) and bool(await bot.service.jobs(origin, page=page + 1, per_page=render.MAX_PER_PAGE))
    return render.history(records, page), history_view(records, page, has_next)


async def turn_page(interaction: discord.Interaction, page: int) -> None:
    bot: RemixBot = interaction.client  # type: ignore[assignment]
    await interaction.response.defer()
    text, view = await history_page(bot, intake.origin_of_interaction(interaction), page)
    await interaction.edit_original_response(content=text, view=view)


async def change_setting(interaction: discord.Interaction, key: str, value: str) -> None:
    bot: RemixBot = interaction.client  # type: ignore[assignment]
    await interaction.response.defer()
    defaults = await bot.service.change_setting(intake.origin_of_interaction(interaction), key, value)
    text, view = await settings_page(bot, defaults)
    await interaction.edit_original_response(content=text, view=view)
