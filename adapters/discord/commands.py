"""The app commands: /remix, /models, /settings, /history, /info, /cancel, and the message
context menu "Apps → Remix" with its modal.

Every command answers within Discord's 3 seconds: a refusal that needs no download is an
immediate ephemeral line, everything else is deferred first (ephemerally: the public part of a
job is its status message, posted in the channel with the bot token).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
from discord import app_commands

from adapters.discord import answers, buttons, intake, render, server
from bot import presenter
from bot.flags import Flag, Given, flag_table
from bot.service import Refusal
from bot.settings import Limits
from bot.styles import TRANSFER_STYLES

if TYPE_CHECKING:
    from adapters.discord.bot import RemixBot

MODAL_TIMEOUT = 600.0  # seconds a "Remix" modal (and its image download) waits for the user


def register(tree: app_commands.CommandTree, limits: Limits) -> None:
    for command in (
        remix_command(limits),
        models_command,
        styles_command,
        loras_command,
        settings_command(limits),
        history_command,
        info_command,
        cancel_command,
        forget_command,
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


def model_list(text: str | None) -> str | None:
    """``"fast, classic"`` → ``"fast,classic"``; None when empty."""
    names = [name for name in re.split(r"[,\s]+", text or "") if name]
    return ",".join(names) or None


# /remix ----------------------------------------------------------------------------------------

REFERENCES = ("ref1", "ref2", "ref3")


def option_type(flag: Flag) -> Any:
    """The annotation discord.py turns into the flag's option: its type, bounds or choices."""
    if flag.choices:
        return Literal[flag.choices]
    if flag.kind == "int" and flag.low is not None and flag.high is not None:
        return app_commands.Range[int, int(flag.low), int(flag.high)]
    if flag.kind == "float" and flag.low is not None and flag.high is not None:
        return app_commands.Range[float, float(flag.low), float(flag.high)]
    if flag.kind == "switch":
        return bool
    if flag.max_length:
        return app_commands.Range[str, 1, flag.max_length]
    return str


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


Option = tuple[Any, str]  # the annotation discord.py reads an option's type, bounds or choices from; its description


def command(
    name: str,
    description: str,
    callback: Callable[..., Coroutine[Any, Any, None]],
    required: dict[str, Option],
    optional: dict[str, Option],
) -> app_commands.Command[Any, ..., None]:
    """An app command whose options are listed here rather than written in ``callback``'s signature.

    discord.py reads a command's options from its callback's signature, so the callback is given
    one built from these (every optional option defaults to None) and takes them as keywords.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)
    ]
    parameters += [inspect.Parameter(key, keyword, annotation=kind) for key, (kind, _) in required.items()]
    parameters += [
        inspect.Parameter(key, keyword, default=None, annotation=Optional[kind])  # noqa: UP045 (Range has no `|`)
        for key, (kind, _) in optional.items()
    ]
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # discord.py reads it
    app_commands.describe(**{key: text for key, (_, text) in {**required, **optional}.items()})(callback)
    return app_commands.Command(name=name, description=description, callback=callback)


def remix_command(limits: Limits) -> app_commands.Command[Any, ..., None]:
    """/remix: the image, the prompt, an option per flag of the core's table (its keyword, bounds and
    help) and ref1–ref3 (just before ref_scale, which weighs them). The options the user set go to
    the core by flag name, as typed values: nothing is turned back into text."""
    flags = flag_table(limits)

    async def remix(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: str,
        ref1: discord.Attachment | None,
        ref2: discord.Attachment | None,
        ref3: discord.Attachment | None,
        **options: Given | None,
    ) -> None:
        given = {name: value for name, flag in flags.items() if (value := options[flag.keyword]) is not None}
        references = [ref for ref in (ref1, ref2, ref3) if ref is not None]
        await remix_with(interaction, image, prompt, references, given)

    optional: dict[str, Option] = {}
    for flag in flags.values():
        if flag.name == "ref-scale":
            for key, which in zip(REFERENCES, ("A", "A second", "A third"), strict=True):
                optional[key] = (discord.Attachment, f"{which} reference image")
        optional[flag.keyword] = (option_type(flag), sentence(flag.describe()))
    required: dict[str, Option] = {
        "image": (discord.Attachment, "The picture to remix"),
        "prompt": (
            app_commands.Range[str, 1, limits.max_prompt_length],
            "What to make of it, e.g. a watercolor of the harbor",
        ),
    }
    made = command("remix", "Remix an image: attach it and say what to make of it", remix, required, optional)
    made.autocomplete("model")(model_choices)
    made.autocomplete("compare")(compare_choices)
    made.autocomplete("style")(style_choices)
    made.autocomplete("prompt")(prompt_choices)
    return made


async def remix_with(
    interaction: discord.Interaction,
    image: discord.Attachment,
    prompt: str,
    references: list[discord.Attachment],
    given: dict[str, Given],
) -> None:
    bot = bot_of(interaction)
    check_channel(interaction)
    attachments = [image, *references]
    for attachment in attachments:
        problem = intake.attachment_problem(attachment, bot.settings.limits)
        if problem:
            raise Refusal(problem)
    await interaction.response.defer(ephemeral=True, thinking=True)
    data = await asyncio.gather(*(intake.read(attachment) for attachment in attachments))
    ticket = await intake.remix(
        bot,
        origin=intake.origin_of_interaction(interaction),
        channel=channel_of(interaction),
        text=prompt.strip(),
        options=given,
        image=data[0],
        references=tuple(data[1:]),
        upload_limit=interaction.filesize_limit,
    )
    await interaction.edit_original_response(content=render.acknowledged(ticket))


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


async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The styles here (this server's own first), then the style model's built-in ones, matching what is typed."""
    listing = await bot_of(interaction).service.styles(intake.origin_of_interaction(interaction))
    typed = current.lower().strip()
    found = [(style.name, style.summary()) for style in (*listing.own, *listing.shared)]
    if listing.transfer:
        found += [(name, "the style model's own style") for name in TRANSFER_STYLES]
    return [
        app_commands.Choice(name=render.model_choice(name, about), value=name)
        for name, about in found
        if not typed or typed in name or typed in about.lower()
    ][:25]


LORA_TAG = re.compile(r"<lora:([^:<>]*)$", re.IGNORECASE)


async def prompt_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """While a ``<lora:`` tag is being typed at the end of the prompt: the prompt completed with each LoRA
    that matches (nothing otherwise, so the prompt stays free text)."""
    match = LORA_TAG.search(current)
    if match is None:
        return []
    typed = match[1].lower().strip()
    head = current[: match.start()]
    choices = []
    for name, base in await bot_of(interaction).service.loras():
        value = f"{head}<lora:{name}:0.8>"
        if (not typed or typed in name.lower()) and len(value) <= 100:
            label = render.model_choice(value, base)
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
    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
        label="Prompt", placeholder="make it winter, as a watercolor", max_length=1000, custom_id="prompt"
    )
    strength: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
        label="Strength, 0 to 1 (optional)",
        placeholder="0.6",
        required=False,
        max_length=6,
        custom_id="strength",
    )

    def __init__(self, target: discord.Message, attachment: discord.Attachment, download: asyncio.Task[bytes]):
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
        origin = intake.origin_of(
            interaction.user,
            interaction.channel_id,
            interaction.guild_id,
            self.target.id,
            private=intake.is_dm(interaction.channel, interaction.guild_id),
            parent_id=getattr(interaction.channel, "parent_id", None),
        )
        parent_job, parent_output = await intake.lineage(bot, origin, self.target, self.attachment)
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

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]  # discord.py's Modal narrows BaseView's
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


@app_commands.command(name="styles", description="The --style presets you can use here")
async def styles_command(interaction: discord.Interaction) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    listing = await service.styles(intake.origin_of_interaction(interaction))
    await answers.tell(interaction, presenter.styles_text(listing, render.MARKDOWN, render.MAX_CONTENT))


@app_commands.command(name="loras", description="The LoRAs for <lora:name:0.8> in a prompt")
async def loras_command(interaction: discord.Interaction) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    await answers.tell(interaction, presenter.loras_text(await service.loras(), render.MARKDOWN, render.MAX_CONTENT))


def settings_command(limits: Limits) -> app_commands.Command[Any, ..., None]:
    """/settings: the defaults /remix starts from, within the table's bounds for strength and count."""
    flags = flag_table(limits)

    async def settings(
        interaction: discord.Interaction, model: str | None, strength: float | None, count: int | None
    ) -> None:
        await change_settings(interaction, model, strength, count)

    optional: dict[str, Option] = {
        "model": (str, "Your default model"),
        "strength": (option_type(flags["strength"]), f"Your default strength, {flags['strength'].bounds}"),
        "count": (option_type(flags["n"]), f"How many images by default, {flags['n'].bounds}"),
    }
    made = command("settings", "Your defaults for /remix (only you see them)", settings, {}, optional)
    made.autocomplete("model")(model_choices)
    return made


async def change_settings(
    interaction: discord.Interaction, model: str | None, strength: float | None, count: int | None
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
    record = await service.info(intake.origin_of_interaction(interaction), job.strip().strip("`").lower())
    await answers.tell(interaction, render.info(record))


@app_commands.command(name="cancel", description="Cancel your waiting or running jobs (or one; admins: anyone's here)")
@app_commands.describe(job="One job id; leave it out to cancel all of yours")
async def cancel_command(interaction: discord.Interaction, job: app_commands.Range[str, 1, 40] | None = None) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    origin = intake.origin_of_interaction(interaction)
    one = job.strip().strip("`") if job else None
    cancelled = await service.cancel(origin, one, is_admin=server.is_admin(interaction))
    if not cancelled:
        await answers.tell(interaction, "Nothing to cancel.")
    else:
        ids = ", ".join(f"`{job_id}`" for job_id in cancelled)
        await answers.tell(interaction, f"Cancelled {len(cancelled)} job{'s' if len(cancelled) > 1 else ''}: {ids}")


@app_commands.command(name="forget", description="Delete your history, its pictures and your settings")
async def forget_command(interaction: discord.Interaction) -> None:
    service = bot_of(interaction).service
    await interaction.response.defer(ephemeral=True, thinking=True)
    answer = await service.forget(intake.origin_of_interaction(interaction))
    text = f"This deletes all {answer.jobs} of your jobs, their pictures and your settings. Sure?"
    await answers.tell(interaction, text, view=buttons.forget_view(answer.code))


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
