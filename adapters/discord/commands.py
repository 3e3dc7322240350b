"""The app commands: /remix, /models, /settings, /history, /info, /cancel, and the message
context menu "Apps → Remix" with its modal.

Every command answers within Discord's 3 seconds: a refusal that needs no download is an
immediate ephemeral line, everything else is deferred first (ephemerally: the public part of a
job is its status message, posted in the channel with the bot token).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from adapters.discord import answers, buttons, intake, render
from bot.requests import MAX_CFG, MAX_FPS, MAX_FRAMES, MAX_IMAGE_CFG, MAX_SEED, MOTIONS, number
from bot.service import Refusal

if TYPE_CHECKING:
    from adapters.discord.bot import RemixBot

MODAL_TIMEOUT = 600.0  # seconds a "Remix" modal (and its image download) waits for the user


def register(tree: app_commands.CommandTree) -> None:
    for command in (
        remix_command,
        models_command,
        settings_command,
        history_command,
        info_command,
        cancel_command,
        remix_message,
    ):
        tree.add_command(command)
    tree.error(on_error)


async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    if isinstance(error, app_commands.CommandInvokeError):
        await answers.report(interaction, error.original)
    elif isinstance(error, app_commands.TransformerError):
        await answers.report(interaction, Refusal(f"I couldn't read the value {str(error.value)[:80]!r}."))
    else:
        await answers.report(interaction, error)


def bot_of(interaction: discord.Interaction) -> RemixBot:
    return interaction.client  # type: ignore[return-value]


def channel_of(interaction: discord.Interaction) -> discord.abc.Messageable:
    channel = interaction.channel
    if isinstance(channel, discord.abc.Messageable):
        return channel
    return interaction.client.get_partial_messageable(interaction.channel_id or 0)


def check_channel(interaction: discord.Interaction) -> None:
    if not intake.allowed_here(bot_of(interaction), interaction.channel, interaction.guild_id):
        raise Refusal(render.NOT_HERE)


def request_text(
    prompt: str,
    *,
    model: str | None = None,
    strength: float | None = None,
    negative: str | None = None,
    seed: int | None = None,
    count: int | None = None,
    size: int | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    image_cfg: float | None = None,
    scale: int | None = None,
    compare: str | None = None,
    show_source: bool | None = None,
    motion: str | None = None,
    frames: int | None = None,
    fps: int | None = None,
    ref_scale: float | None = None,
) -> str:
    """The slash command's options as the request grammar every face shares (``prompt --flags``)."""
    parts = [prompt.strip()]
    flags: tuple[tuple[str, object], ...] = (
        ("model", model.strip() if model else None),
        ("strength", strength),
        ("seed", seed),
        ("n", count),
        ("size", size),
        ("steps", steps),
        ("cfg", cfg),
        ("image-cfg", image_cfg),
        ("scale", scale),
        ("compare", model_list(compare)),
        ("motion", motion),
        ("frames", frames),
        ("fps", fps),
        ("ref-scale", ref_scale),
    )
    for flag, value in flags:
        if value is not None:
            parts += [f"--{flag}", number(value) if isinstance(value, float) else str(value)]
    if show_source:
        parts.append("--show-source")
    if negative and negative.strip():
        parts += ["--no", negative.strip()]  # last: its value runs to the end
    return " ".join(parts)


def model_list(text: str | None) -> str | None:
    """``"fast, classic"`` → ``"fast,classic"`` (one token for --compare); None when empty."""
    names = [name for name in re.split(r"[,\s]+", text or "") if name]
    return ",".join(names) or None


# /remix ----------------------------------------------------------------------------------------


@app_commands.command(name="remix", description="Remix an image: attach it and say what to make of it")
@app_commands.describe(
    image="The picture to remix",
    prompt="What to make of it, e.g. a watercolor of the harbor",
    model="Which model to use (default: yours, see /settings)",
    strength="How much to change, 0 to 1",
    negative="What to avoid, e.g. blurry, text",
    seed="Repeat a result exactly",
    count="How many images",
    size="Longest side of the output in pixels",
    steps="Denoising steps: more detail, slower",
    cfg="How closely to follow the prompt, 0 to 30",
    image_cfg="How closely to keep the picture (instruction-edit models), 0 to 10",
    scale="The Upscale button's factor",
    compare="Also run it on these models, comma-separated (a side-by-side sheet follows)",
    show_source="Post your picture next to each result",
    motion="How much the Animate button's clip moves",
    frames="Frames in the Animate button's clip",
    fps="Frames per second of the Animate button's clip",
    ref1="A reference image",
    ref2="A second reference image",
    ref3="A third reference image",
    ref_scale="How strongly the reference images steer the result, 0 to 1",
)
@app_commands.choices(
    scale=[app_commands.Choice(name="×2", value=2), app_commands.Choice(name="×4", value=4)],
    motion=[app_commands.Choice(name=motion, value=motion) for motion in MOTIONS],
)
async def remix_command(
    interaction: discord.Interaction,
    image: discord.Attachment,
    prompt: app_commands.Range[str, 1, 1000],
    model: str | None = None,
    strength: app_commands.Range[float, 0.0, 1.0] | None = None,
    negative: app_commands.Range[str, 1, 1000] | None = None,
    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    count: app_commands.Range[int, 1, 4] | None = None,
    size: app_commands.Range[int, 64, 4096] | None = None,
    steps: app_commands.Range[int, 1, 500] | None = None,
    cfg: app_commands.Range[float, 0.0, MAX_CFG] | None = None,
    image_cfg: app_commands.Range[float, 0.0, MAX_IMAGE_CFG] | None = None,
    scale: int | None = None,
    compare: app_commands.Range[str, 1, 200] | None = None,
    show_source: bool | None = None,
    motion: str | None = None,
    frames: app_commands.Range[int, 2, MAX_FRAMES] | None = None,
    fps: app_commands.Range[int, 1, MAX_FPS] | None = None,
    ref1: discord.Attachment | None = None,
    ref2: discord.Attachment | None = None,
    ref3: discord.Attachment | None = None,
    ref_scale: app_commands.Range[float, 0.0, 1.0] | None = None,
) -> None:
    bot = bot_of(interaction)
    check_channel(interaction)
    attachments = [image, *(ref for ref in (ref1, ref2, ref3) if ref is not None)]
    for attachment in attachments:
        problem = intake.attachment_problem(attachment, bot.settings.limits)
        if problem:
            raise Refusal(problem)
    await interaction.response.defer(ephemeral=True, thinking=True)
    data = await asyncio.gather(*(intake.read(attachment) for attachment in attachments))
    text = request_text(
        prompt,
        model=model,
        strength=strength,
        negative=negative,
        seed=seed,
        count=count,
        size=size,
        steps=steps,
        cfg=cfg,
        image_cfg=image_cfg,
        scale=scale,
        compare=compare,
        show_source=show_source,
        motion=motion,
        frames=frames,
        fps=fps,
        ref_scale=ref_scale,
    )
    ticket = await intake.remix(
        bot,
        origin=intake.origin_of_interaction(interaction),
        channel=channel_of(interaction),
        text=text,
        image=data[0],
        references=tuple(data[1:]),
        upload_limit=interaction.filesize_limit,
    )
    await interaction.edit_original_response(content=render.acknowledged(ticket))


@remix_command.autocomplete("model")
async def model_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    service = bot_of(interaction).service
    availability = await service.availability()
    typed = current.lower().strip()
    choices = []
    for entry in service.models:
        if typed and typed not in entry.name.lower() and typed not in entry.description.lower():
            continue
        description = (
            entry.description if availability.get(entry.name) is None else f"(not available here) {entry.description}"
        )
        choices.append(app_commands.Choice(name=render.model_choice(entry.name, description), value=entry.name))
    return choices[:25]


@remix_command.autocomplete("compare")
async def compare_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The models typed so far, plus one more that can run here (completing the last name typed)."""
    service = bot_of(interaction).service
    availability = await service.availability()
    typed, _, last = current.rpartition(",")
    chosen = (model_list(typed) or "").split(",") if typed.strip() else []
    last = last.strip().lower()
    choices = []
    for entry in service.models:
        if entry.name in chosen or availability.get(entry.name) is not None:
            continue
        if last and last not in entry.name.lower():
            continue
        value = ",".join([*chosen, entry.name])
        if len(value) <= 100:
            label = render.model_choice(value, entry.description)
            choices.append(app_commands.Choice(name=label, value=value))
    return choices[:25]


# Apps → Remix ----------------------------------------------------------------------------------


@app_commands.context_menu(name="Remix")
async def remix_message(interaction: discord.Interaction, message: discord.Message) -> None:
    """A modal asks for the prompt and strength; the image downloads meanwhile."""
    bot = bot_of(interaction)
    check_channel(interaction)
    attachment = intake.first_image(message)
    if attachment is None:
        raise Refusal(render.NO_IMAGE)
    problem = intake.attachment_problem(attachment, bot.settings.limits)
    if problem:
        raise Refusal(problem)
    download = asyncio.create_task(intake.read(attachment))
    try:
        await interaction.response.send_modal(RemixModal(message, attachment, download))
    except BaseException:
        download.cancel()
        raise


class RemixModal(discord.ui.Modal, title="Remix this image"):
    prompt = discord.ui.TextInput(
        label="Prompt", placeholder="make it winter, as a watercolor", max_length=1000, custom_id="prompt"
    )
    strength = discord.ui.TextInput(
        label="Strength, 0 to 1 (optional)",
        placeholder="0.6",
        required=False,
        max_length=6,
        custom_id="strength",
    )

    def __init__(self, target: discord.Message, attachment: discord.Attachment, download: asyncio.Task):
        super().__init__(timeout=MODAL_TIMEOUT)
        self.target = target
        self.attachment = attachment
        self.download = download

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = self.prompt.value.strip()
        if self.strength.value.strip():
            text += f" --strength {self.strength.value.strip()}"
        image = await self.download
        parent_job, parent_output = intake.parent_of(self.target, self.attachment)
        if parent_job is not None and await bot.service.job(parent_job) is None:
            parent_job = parent_output = None  # someone else's result: no lineage to record
        origin = intake.origin_of(interaction.user, interaction.channel_id, interaction.guild_id, self.target.id)
        ticket = await intake.remix(
            bot,
            origin=origin,
            channel=channel_of(interaction),
            text=text,
            image=image,
            reply_to=self.target,
            parent_job=parent_job,
            parent_output=parent_output,
            upload_limit=interaction.filesize_limit,
        )
        await interaction.edit_original_response(content=render.acknowledged(ticket))

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await answers.report(interaction, error)

    async def on_timeout(self) -> None:
        self.download.cancel()


# the other commands ----------------------------------------------------------------------------


@app_commands.command(name="models", description="The models this bot can use")
async def models_command(interaction: discord.Interaction) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    default = (await service.user_settings(intake.origin_of_interaction(interaction))).model
    embed = render.models(service.models, await service.availability(), default)
    await answers.tell(interaction, None, embed=embed)


@app_commands.command(name="settings", description="Your defaults for /remix (only you see them)")
@app_commands.describe(
    model="Your default model", strength="Your default strength, 0 to 1", count="How many images by default"
)
async def settings_command(
    interaction: discord.Interaction,
    model: str | None = None,
    strength: app_commands.Range[float, 0.0, 1.0] | None = None,
    count: app_commands.Range[int, 1, 4] | None = None,
) -> None:
    bot = bot_of(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    origin = intake.origin_of_interaction(interaction)
    changes: dict[str, object] = {}
    if model is not None:
        changes["model"] = model.strip()
    if strength is not None:
        changes["strength"] = strength
    if count is not None:
        changes["num_images_per_prompt"] = count
    service = bot.service
    defaults = await service.change_settings(origin, **changes) if changes else await service.user_settings(origin)
    text, view = await buttons.settings_page(bot, defaults)
    await answers.tell(interaction, text, view=view)


settings_command.autocomplete("model")(model_choices)


@app_commands.command(name="history", description="Your recent jobs (only you see them)")
async def history_command(interaction: discord.Interaction) -> None:
    bot = bot_of(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    text, view = await buttons.history_page(bot, intake.origin_of_interaction(interaction), 0)
    await answers.tell(interaction, text, view=view)


@app_commands.command(name="info", description="A job's full settings")
@app_commands.describe(job="The job id (see /history)")
async def info_command(interaction: discord.Interaction, job: app_commands.Range[str, 1, 40]) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    job_id = job.strip().strip("`")
    record = await service.job(job_id)
    mine = (
        record is not None and record.origin.platform == "discord" and record.origin.user_id == str(interaction.user.id)
    )
    here = record is not None and record.origin.chat_id == str(interaction.channel_id)
    if record is None or not (mine or here):
        raise Refusal(f"I can't find a job {render.safe(job_id, 40)} of yours.")
    await answers.tell(interaction, render.info(record))


@app_commands.command(name="cancel", description="Cancel your waiting or running jobs (or one of them)")
@app_commands.describe(job="One job id; leave it out to cancel all of yours")
async def cancel_command(interaction: discord.Interaction, job: app_commands.Range[str, 1, 40] | None = None) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    cancelled = await service.cancel(intake.origin_of_interaction(interaction), job.strip().strip("`") if job else None)
    if not cancelled:
        await answers.tell(interaction, "Nothing to cancel.")
    else:
        ids = ", ".join(f"`{job_id}`" for job_id in cancelled)
        await answers.tell(interaction, f"Cancelled {len(cancelled)} job{'s' if len(cancelled) > 1 else ''}: {ids}")


@info_command.autocomplete("job")
@cancel_command.autocomplete("job")
async def job_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    records = await bot_of(interaction).service.jobs(intake.origin_of_interaction(interaction), per_page=25)
    typed = current.lower().strip()
    return [
        app_commands.Choice(name=render.model_choice(r.id, f"{r.status.value} · {r.request.prompt[:60]}"), value=r.id)
        for r in records
        if not typed or typed in r.id or typed in r.request.prompt.lower()
    ][:25]
