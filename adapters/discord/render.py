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

from bot.flags import number
from bot.history import JobRecord, OutputRecord
from bot.jobs import Action, Event, Job, Status
from bot.models import Models
from bot.requests import Defaults, format_request
from bot.service import Ticket

MAX_CONTENT = 2000  # Discord's message content limit
MAX_BODY = 24 * 1024 * 1024  # Discord caps a request at 25 MiB: keep a margin for the JSON part
MAX_PER_PAGE = 5
MAX_FIELDS = 25  # fields in one embed

ACTION_TITLES = {
    Action.remix: "🎨",
    Action.reroll: "🔄 Reroll",
    Action.vary: "🔀 Variation",
    Action.upscale: "⬆️ Upscale",
    Action.fixface: "🙂 Face fix",
    Action.animate: "🎞 Animation",
}
STATUS_MARKS = {
    Status.queued: "⏳",
    Status.running: "🎨",
    Status.done: "✅",
    Status.failed: "❌",
    Status.cancelled: "✖",
}

NOT_HERE = "I don't take requests in this channel; a server admin has picked other channels for me."
NO_IMAGE = "That message has no image for me to remix."
SOMETHING_WRONG = "Something went wrong on my side; it has been logged. Please try again."


def safe(text: str, limit: int = 300) -> str:
    """User text made inert for Discord (no markdown, no pings) and kept short."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape_markdown(escape_mentions(text))


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if user_id.isdigit() else safe(user_id, 40)


def title(action: Action, prompt: str, parent_output: int | None) -> str:
    """The first words of a job's messages: what it is."""
    if action is Action.remix:
        return f"🎨 **{safe(prompt)}**" if prompt else "🎨 Remix"
    image = f" of image {parent_output + 1}" if parent_output is not None else ""
    what = f"{ACTION_TITLES[action]}{image}"
    return f"{what} · **{safe(prompt, 200)}**" if prompt else what


def header(job: Job | JobRecord) -> str:
    """The first line of a status message: the job, its model and who asked."""
    request = job.request
    return (
        f"{title(job.action, request.prompt, job.parent_output)} · {request.model}"
        f" · requested by {mention(job.origin.user_id)}"
    )


def progress(event: Event) -> str:
    """The second line of a status message while the job waits or runs."""
    if event.status is Status.queued:
        return queued(event.position or 0, event.eta_seconds)
    if event.total:
        return f"🎨 Rendering {event.percent}%"
    return "🎨 Starting…"


def queued(position: int, eta_seconds: float | None = None) -> str:
    if position <= 0:
        return "🎨 Starting…"
    eta = f" · ready in about {duration(eta_seconds)}" if eta_seconds else ""
    return f"⏳ Queued — position {position}{eta}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


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


def seeds(record: JobRecord) -> str:
    found = [output.seed for output in record.outputs]
    if not found:
        return f"seed {record.request.seed}"
    return f"seed {found[0]}" if len(found) == 1 else f"seeds {found[0]}–{found[-1]}"


def result(record: JobRecord, notes: list[str]) -> str:
    """The line under the result (prompt, model, strength or scale, seed, requested by) and notes."""
    r = record.request
    if record.action is Action.upscale:
        settings = f"×{r.scale or 2}"
    elif record.action in (Action.remix, Action.reroll, Action.vary):
        settings = f"strength {number(r.strength)} · {seeds(record)}"
    else:
        settings = seeds(record)
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


def failed(record: JobRecord) -> str:
    error = record.error or "The job failed."
    return clip(f"{header(record)}\n❌ {safe(error, 500)}")


def cancelled(record: JobRecord) -> str:
    return clip(f"{header(record)}\n✖ Cancelled")


def info(record: JobRecord) -> str:
    """A job's full parameters (the Info button and /info)."""
    r = record.request
    state = f"{STATUS_MARKS[record.status]} {record.status.value}"
    lines = [
        f"**Job** `{record.id}` · {record.action.value} · {state}",
        f"**Prompt:** {safe(r.prompt, 900) or '—'}",
    ]
    if r.negative_prompt:
        lines.append(f"**Negative:** {safe(r.negative_prompt, 500)}")
    details = [f"model {r.model}", f"strength {number(r.strength)}", seeds(record)]
    if r.num_inference_steps is not None:
        details.append(f"steps {r.num_inference_steps}")
    if r.guidance_scale is not None:
        details.append(f"cfg {number(r.guidance_scale)}")
    if r.size:
        details.append(f"size {r.size}")
    if r.scale:
        details.append(f"scale {r.scale}×")
    lines.append("**Settings:** " + " · ".join(details))
    if record.outputs:
        sizes = ", ".join(f"{o.width}×{o.height}" for o in record.outputs if o.width)
        lines.append(f"**Outputs:** {len(record.outputs)}" + (f" ({sizes})" if sizes else ""))
    if record.parent_job:
        which = f" image {record.parent_output + 1}" if record.parent_output is not None else ""
        lines.append(f"**From:** `{record.parent_job}`{which}")
    if record.engine:
        note = f" ({safe(record.note, 200)})" if record.note else ""
        lines.append(f"**Ran on:** {safe(record.engine, 200)}{note}")
    if record.error:
        lines.append(f"**Error:** {safe(record.error, 300)}")
    lines.append(f"**Requested by:** {mention(record.origin.user_id)}")
    lines.append(f"**To repeat it:** `{clip(format_request(r), 900).replace('`', 'ˋ')}`")
    return clip("\n".join(lines))


def history(records: list[JobRecord], page: int) -> str:
    """One page of the user's own jobs, newest first."""
    if not records:
        return "You have no jobs yet — try `/remix`." if page == 0 else "No more jobs."
    lines = [f"**Your jobs** — page {page + 1}"]
    for number_, record in enumerate(records, start=1):
        r = record.request
        outputs = f" · {len(record.outputs)} image{'s' if len(record.outputs) != 1 else ''}" if record.outputs else ""
        lines.append(
            f"`{number_}` {STATUS_MARKS[record.status]} `{record.id}` {record.action.value} · {r.model}"
            f" · {safe(r.prompt, 60) or '—'}{outputs} · <t:{int(record.created_at)}:R>"
        )
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


def is_still(media_type: str) -> bool:
    """A picture (an animated GIF, like a video, is a clip)."""
    return media_type.startswith("image/") and media_type != "image/gif"


def files(uploads: list[Upload]) -> list[discord.File]:
    """Fresh File objects (discord.py closes them after each request)."""
    return [discord.File(io.BytesIO(upload.data), filename=upload.filename) for upload in uploads]


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
            uploads.append(Upload(name, data))
        elif is_still(output.media_type):
            uploads.append(Upload(output.path.stem + ".jpg", shrink(data, budget)))
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
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)), Image.LANCZOS)


def mb(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB" if value >= 0.1 else f"{size // 1024} KB"
