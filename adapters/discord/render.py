"""What the Discord adapter shows: message texts, and result files made to fit the upload limit.

Everything here is text, an embed or bytes (no network): status lines ("Queued — position 3",
"Rendering 40%"), the result line under the images, /info, /history, /models and /settings pages.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import discord
from discord.utils import DEFAULT_FILE_SIZE_LIMIT_BYTES, escape_markdown, escape_mentions
from PIL import Image

from bot import presenter
from bot.flags import number
from bot.history import JobRecord, OutputRecord
from bot.jobs import Action, Job, Origin, Status
from bot.models import Models
from bot.requests import Defaults
from bot.service import Ticket

MAX_CONTENT = 2000  # Discord's message content limit
MAX_BODY = 24 * 1024 * 1024  # Discord caps a request at 25 MiB: keep a margin for the JSON part
MAX_PER_PAGE = 5
MAX_FIELDS = 25  # fields in one embed

NOT_HERE = "I don't take requests in this channel; a server admin has picked other channels for me."
NO_IMAGE = "That message has no image for me to remix."
SOMETHING_WRONG = "Something went wrong on my side; it has been logged. Please try again."


def escape(text: str) -> str:
    """Text made inert for Discord: no markdown, no pings."""
    return escape_markdown(escape_mentions(text))


def safe(text: str, limit: int = 300) -> str:
    """User text made inert for Discord and kept short."""
    return escape(presenter.clip(presenter.plain(text), limit))


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return presenter.clip(text, limit)


class Markdown:
    """Discord's markdown, for the core's presenter."""

    def text(self, plain: str) -> str:
        return escape(plain)

    def bold(self, plain: str) -> str:
        return f"**{escape(plain)}**"

    def code(self, plain: str) -> str:
        return f"`{plain.replace('`', 'ˋ')}`"

    def user(self, origin: Origin) -> str:
        return mention(origin.user_id)


MARKDOWN = Markdown()


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if user_id.isdigit() else safe(user_id, 40)


def title(action: Action, prompt: str, parent_output: int | None) -> str:
    """The first words of a job's messages: what it is."""
    if action is Action.remix:
        return f"{presenter.MARKS[Status.running]} **{safe(prompt)}**" if prompt else presenter.TITLES[action]
    image = f" of image {parent_output + 1}" if parent_output is not None else ""
    what = f"{presenter.TITLES[action]}{image}"
    return f"{what} · **{safe(prompt, 200)}**" if prompt else what


def header(job: Job | JobRecord) -> str:
    """The first line of a status message: the job, its model and who asked."""
    request = job.request
    return (
        f"{title(job.action, request.prompt, job.parent_output)} · {request.model}"
        f" · requested by {mention(job.origin.user_id)}"
    )


def status(head: str, line: str) -> str:
    return clip(f"{head}\n{line}")


def acknowledged(ticket: Ticket) -> str:
    """The private note to the requester once their job is queued."""
    ids = ", ".join(f"`{job.id}`" for job in ticket.jobs)
    text = (
        f"✅ Queued as {ids} — the result will appear in this channel."
        if len(ticket.jobs) == 1
        else f"✅ Queued {len(ticket.jobs)} jobs ({ids}) — the results will appear in this channel."
    )
    if ticket.offer:
        text += f"\nThis image carries settings; to reuse them, use this prompt: `{clip(ticket.offer, 1500)}`"
    return text


def result(record: JobRecord, notes: list[str]) -> str:
    """The line under the result (prompt, model, strength or scale, seed, requested by) and notes."""
    r = record.request
    if record.action is Action.upscale:
        settings = f"×{r.scale or 2}"
    elif record.action in (Action.remix, Action.reroll, Action.vary):
        settings = f"strength {number(r.strength)} · {presenter.seeds(record)}"
    else:
        settings = presenter.seeds(record)
    line = (
        f"{title(record.action, r.prompt, record.parent_output)} · {r.model} · {settings}"
        f" · requested by {mention(record.origin.user_id)}"
    )
    extra = [f"-# {note}" for note in notes]
    if record.note:
        extra.append(f"-# {safe(record.note, 200)}")
    return clip("\n".join([line, *extra]))


def compare(models: list[str]) -> str:
    """The line over a --compare set's side-by-side sheet."""
    return clip("Compare: " + " · ".join(safe(model, 80) for model in models))


def before_after(record: JobRecord, indexes: list[int]) -> str:
    """The line over before | after sheets of a job's images."""
    which = ""
    if len(record.outputs) > 1:
        which = f" of image{'s' if len(indexes) > 1 else ''} " + ", ".join(str(i + 1) for i in indexes)
    return clip(f"↔️ Before / after{which} · {record.request.model}")


def finished(record: JobRecord) -> str:
    """A failed or cancelled job's message: its header and the outcome."""
    return clip(f"{header(record)}\n{escape(presenter.outcome(record))}")


def info(record: JobRecord) -> str:
    """A job's full parameters (the Info button and /info)."""
    return presenter.info(record, MARKDOWN, MAX_CONTENT)


def history(records: list[JobRecord], page: int) -> str:
    """One page of the user's own jobs, newest first."""
    if not records:
        return "You have no jobs yet — try `/remix`." if page == 0 else "No more jobs."
    lines = [f"**Your jobs** — page {page + 1}"]
    for number_, record in enumerate(records, start=1):
        lines.append(presenter.history_line(number_, record, MARKDOWN, when=f"<t:{int(record.created_at)}:R>"))
    lines.append("-# 🔄 n remixes job n again with a new seed.")
    return clip("\n".join(lines))


def models(registry: Models, availability: dict[str, str | None], default: str) -> discord.Embed:
    """The registry as an embed: a field per model (Discord allows 25), ready or why not."""
    entries = list(registry)
    ready = sum(availability.get(entry.name) is None for entry in entries)
    embed = discord.Embed(title="Models", description=f"{ready} of {len(entries)} can run here right now.")
    for entry in entries[:MAX_FIELDS]:
        reason = availability.get(entry.name)
        mark = " (your default)" if entry.name == default else ""
        state = "✅ ready" if reason is None else f"⛔ {safe(reason, 300)}"
        embed.add_field(
            name=f"{entry.name}{mark}",
            inline=False,
            value=clip(f"{safe(entry.description, 400) or entry.kind}\n{state}", 1024),
        )
    if len(entries) > MAX_FIELDS:
        embed.set_footer(text=f"…and {len(entries) - MAX_FIELDS} more (see /remix model:)")
    return embed


def model_choice(name: str, description: str) -> str:
    """An autocomplete choice's label (Discord allows 100 characters)."""
    label = f"{name} — {' '.join(description.split())}" if description else name
    return label if len(label) <= 100 else label[:99] + "…"


def settings(defaults: Defaults) -> str:
    strength = "the model's default" if defaults.strength is None else number(defaults.strength)
    count = defaults.num_images_per_prompt
    return (
        f"**Your defaults** (used when `/remix` leaves them out)\n"
        f"model **{defaults.model}** · strength **{strength}** · images **{count}**\n"
        f"-# Change them with the buttons, or `/settings model: strength: count:`."
    )


# files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    spoiler: bool = False  # uploaded behind a spoiler (the chat's NSFW policy)


def is_still(media_type: str) -> bool:
    """A picture (an animated GIF, like a video, is a clip)."""
    return media_type.startswith("image/") and media_type != "image/gif"


def files(uploads: list[Upload]) -> list[discord.File]:
    """Fresh File objects (discord.py closes them after each request)."""
    return [
        discord.File(io.BytesIO(upload.data), filename=upload.filename, spoiler=upload.spoiler) for upload in uploads
    ]


def fit_pictures(pictures: list[tuple[str, bytes]], limit: int | None) -> list[Upload]:
    """Pictures the bot made (sheets), named, as uploads under ``limit`` bytes each (a JPEG where a
    PNG won't fit)."""
    limit = limit or DEFAULT_FILE_SIZE_LIMIT_BYTES
    budget = min(limit, MAX_BODY // max(1, len(pictures)))
    return [
        Upload(name, data) if len(data) <= budget else Upload(name.rsplit(".", 1)[0] + ".jpg", shrink(data, budget))
        for name, data in pictures
    ]


def fit(outputs: list[tuple[OutputRecord, bytes]], limit: int | None) -> tuple[list[Upload], list[str]]:
    """The result files as they can be uploaded under ``limit`` bytes each, and notes on changes.

    Pictures over the limit are re-encoded as JPEG (smaller steps of quality, then of size); clips
    over it are left out with a note. The lossless originals stay in the history.
    """
    limit = limit or DEFAULT_FILE_SIZE_LIMIT_BYTES
    budget = min(limit, MAX_BODY // max(1, len(outputs)))
    uploads: list[Upload] = []
    reencoded = False
    notes: list[str] = []
    for output, data in outputs:
        name = output.path.name
        if len(data) <= budget:
            uploads.append(Upload(name, data, output.spoiler))
        elif is_still(output.media_type):
            uploads.append(Upload(output.path.stem + ".jpg", shrink(data, budget), output.spoiler))
            reencoded = True
        else:
            notes.append(f"{name} is too big to attach here ({mb(len(data))}; the limit is {mb(budget)}).")
    if reencoded:
        notes.insert(
            0,
            f"Re-encoded as JPEG to fit this server's {mb(limit)} upload limit; "
            "the lossless PNG is kept, and Info has its settings.",
        )
    return uploads, notes


def shrink(data: bytes, budget: int) -> bytes:
    """A JPEG of the image that fits ``budget`` bytes (lower quality first, then smaller)."""
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    while True:
        for quality in (92, 85, 75, 60):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= budget:
                return buffer.getvalue()
        if max(image.size) <= 64:
            return buffer.getvalue()
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)), Image.Resampling.LANCZOS)


def mb(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB" if value >= 0.1 else f"{size // 1024} KB"
