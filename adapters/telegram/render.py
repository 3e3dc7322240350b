"""Everything the Telegram adapter says, as text: status lines, captions, /info, /models, /help.

Captions and /info are HTML (``html.escape`` on everything a user typed); the rest is plain text.
A result's caption ends with ``job <id>`` (and ``#N`` in an album): a reply to that picture is
traced back to the job it came from (``result_tag``).
"""

from __future__ import annotations

import html
import re

from bot import flags, presenter
from bot.history import JobRecord, OutputRecord
from bot.jobs import Action, Job, Origin
from bot.models import Models
from bot.requests import Defaults
from bot.settings import Limits

CAPTION_LIMIT = 1024  # Telegram's caption limit, after entities are parsed
TAG = re.compile(r"\bjob ([0-9a-f]{12})(?: #(\d{1,2}))?")

MESSAGE_LIMIT = 4096  # Telegram's message text limit, after entities are parsed


class Html:
    """Telegram's HTML markup, for the core's presenter."""

    def text(self, plain: str) -> str:
        return html.escape(plain)

    def bold(self, plain: str) -> str:
        return f"<b>{html.escape(plain)}</b>"

    def code(self, plain: str) -> str:
        return f"<code>{html.escape(plain)}</code>"

    def user(self, origin: Origin) -> str:
        return html.escape(origin.user_name or origin.user_id)


HTML = Html()

WELCOME = """\
Hi! I remix pictures.

• Send a photo with the caption /remix and what you want, e.g.
  /remix watercolor --strength 0.6
• Or reply /remix <prompt> to any picture — yours, or one of my results.
• In this private chat a photo with a plain caption works too.
• An album of 2–4 pictures: the first is the source, the others are references.
• Send the picture as a file for full quality (up to 20 MB).

Under each result: 🔄 Reroll · 🔀 Variations · ⬆️ Upscale · 🙂 Fix face · 🎞 Animate ·
📄 Original (the lossless PNG with its settings) · ↔️ Before/after (your picture next to the result).

Commands: /models · /styles · /loras · /settings · /history · /cancel · /info <job>

Options:
"""

HOWTO = (
    "To remix, send a photo with the caption /remix and what you want, e.g.\n"
    "/remix watercolor --strength 0.6\n"
    "or reply /remix <prompt> to a picture. /help lists every option."
)

PRIVATE_HINT = (
    "Nice picture! Add a caption saying how to remix it, e.g. “watercolor --strength 0.6”, "
    "or reply to it with /remix <prompt>."
)

NO_PICTURE = "That message has no picture. Reply /remix <prompt> to a photo or an image file."

FRIENDLY_ERROR = "Sorry — something went wrong on my side. Please try again in a moment."


def help_text(limits: Limits) -> str:
    return WELCOME + flags.help_text(limits)


def label(job: Job | JobRecord) -> str:
    """What a job is, before its status line: "⬆️ Upscale", and the model in a --compare set (a
    remix needs no label: its status answers the request)."""
    text = "" if job.action is Action.remix else presenter.TITLES[job.action]
    if job.request.compare:
        text = f"{text} {job.request.model}".strip()
    return text


def status_text(job: Job | JobRecord, line: str) -> str:
    """A status message: "⬆️ Upscale · ⏳ Queued — position 3 · ready in about 20 s"."""
    prefix = label(job)
    return presenter.clip(f"{prefix} · {line}" if prefix else line, MESSAGE_LIMIT)


def number(value: float | None) -> str:
    return "default" if value is None else flags.number(value)


def caption(record: JobRecord, output: OutputRecord, count: int) -> str:
    """A result's HTML caption: the prompt, the settings that made it, and its job tag."""
    r = record.request
    details = [r.model, f"strength {number(r.strength)}", f"seed {output.seed}"]
    if record.action is Action.upscale:
        details.insert(0, f"⬆️ ×{r.scale or 2}")
    lines = [" · ".join(details)]
    if record.note:
        lines.append(f"<i>{html.escape(record.note)}</i>")
    tag = f"job <code>{record.id}</code>" + (f" #{output.index + 1}" if count > 1 else "")
    lines.append(tag)
    tail = "\n".join(lines)
    room = CAPTION_LIMIT - len(tail) - 40  # the prompt gets what is left
    prompt = r.prompt if len(r.prompt) <= room else r.prompt[: max(room, 0)] + "…"
    head = f"<b>{html.escape(prompt)}</b>\n" if prompt else ""
    return head + tail


def result_tag(text: str | None) -> tuple[str, int] | None:
    """(job id, output index) from a result's caption (its last line), or None."""
    matches = list(TAG.finditer(text or ""))
    if not matches:
        return None
    match = matches[-1]  # the tag ends the caption; a prompt may mention "job …" too
    return match[1], int(match[2]) - 1 if match[2] else 0


def info_text(record: JobRecord) -> str:
    """Every parameter of a job, as HTML, with the /remix line that repeats it (within Telegram's limit)."""
    return presenter.info(record, HTML, MESSAGE_LIMIT, repeat="/remix ")


def models_text(models: Models, availability: dict[str, str | None]) -> str:
    default = models.for_action(Action.remix).name
    lines = ["Models (use --model NAME, or pick a default in /settings):"]
    for entry in models:
        reason = availability.get(entry.name)
        mark = "✅" if reason is None else "🚫"
        extra = " (default)" if entry.name == default else ""
        why = f" — unavailable: {reason}" if reason else ""
        lines.append(f"{mark} {entry.name}{extra}: {entry.description or entry.kind}{why}")
    return "\n".join(lines)


def settings_text(defaults: Defaults, models: Models, name: str = "") -> str:
    model_strength = models[defaults.model].strength if defaults.model in models else None
    strength = (
        number(defaults.strength)
        if defaults.strength is not None
        else f"the model's default ({number(model_strength)})"
    )
    whose = f"{name}'s defaults" if name else "Your defaults"
    return (
        f"{whose}:\n• model: {defaults.model}\n• strength: {strength}\n"
        f"• images per request: {defaults.num_images_per_prompt}\n"
        "Tap to change; flags in a request (--model, --strength, --n) still win."
    )


def history_text(records: list[JobRecord], page: int) -> str:
    head = f"<b>Your recent jobs</b> (page {page + 1}) — tap 🔄 to remix one again:"
    return "\n".join([head] + [presenter.history_line(i + 1, record, HTML) for i, record in enumerate(records)])


def too_big(size: int, limit: int) -> str:
    return (
        f"That file is too big ({mb(size)}); I can fetch up to {mb(limit)} from Telegram. "
        "Send a smaller one, or send it as a photo."
    )


def mb(count: int) -> str:
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
