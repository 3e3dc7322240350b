"""What every face says about jobs, once: status lines (queued with position and ETA, rendering,
done, failed, cancelled), durations, button labels and a job's full info, fitted to a length limit.

Faces pass in their platform's markup (``Markup``: HTML for Telegram, markdown for Discord, plain
text for the console) and their length limit; the words and the rules are here. User text reaches
a message only through ``plain``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.actions import Button
from bot.history import JobRecord
from bot.jobs import Action, Event, Origin, Request, Status
from bot.prompts import describe_prompt
from bot.requests import format_request, written_flags
from bot.styles import TRANSFER_STYLES, StyleList

MARKS = {
    Status.queued: "⏳",
    Status.running: "🎨",
    Status.done: "✅",
    Status.failed: "⚠️",
    Status.cancelled: "✖️",
}
# What a job is, in its messages.
TITLES = {
    Action.remix: "🎨 Remix",
    Action.reroll: "🔄 Reroll",
    Action.vary: "🔀 Variation",
    Action.upscale: "⬆️ Upscale",
    Action.fixface: "🙂 Fix face",
    Action.animate: "🎞 Animation",
    Action.outpaint: "🔍 Zoom out / pan",
    Action.cutout: "✂️ Cut out",
}


@dataclass(frozen=True)
class Label:
    """A button's label: the emoji and the words (some faces show them apart)."""

    emoji: str
    text: str

    def __str__(self) -> str:
        return f"{self.emoji} {self.text}"


# One label set for every face.
LABELS = {
    Button.reroll: Label("🔄", "Reroll"),
    Button.vary: Label("🔀", "Vary"),
    Button.varystrong: Label("🌀", "Strong vary"),
    Button.upscale: Label("⬆️", "Upscale"),
    Button.fixface: Label("🙂", "Fix face"),
    Button.animate: Label("🎞", "Animate"),
    Button.zoom15: Label("🔍", "Zoom out 1.5×"),
    Button.zoom2: Label("🔍", "Zoom out 2×"),
    Button.panleft: Label("⬅️", "Pan left"),
    Button.panright: Label("➡️", "Pan right"),
    Button.panup: Label("⬆️", "Pan up"),
    Button.pandown: Label("⬇️", "Pan down"),
    Button.cutout: Label("✂️", "Cut out"),
    Button.more: Label("➕", "More"),
    Button.original: Label("📄", "Original"),
    Button.source: Label("↔️", "Before/after"),
    Button.info: Label("ℹ️", "Info"),
    Button.delete: Label("🗑", "Delete"),
    Button.cancel: Label("✖️", "Cancel"),
    Button.forget: Label("🗑", "Forget everything"),
}


def plain(text: str) -> str:
    """User text (a prompt, an engine's note) as one line: runs of whitespace, line breaks
    included, become one space, so it can't fake lines of a message."""
    return " ".join(text.split())


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def queued(position: int, eta_seconds: float | None = None) -> str:
    """ "⏳ Queued — position 3 · ready in about 2 min" (the ETA when the queue knows one)."""
    if position <= 0:
        return f"{MARKS[Status.queued]} Queued"
    eta = f" · ready in about {duration(eta_seconds)}" if eta_seconds else ""
    return f"{MARKS[Status.queued]} Queued — position {position}{eta}"


def progress(event: Event) -> str:
    """The status line of a job that waits or runs."""
    if event.status is Status.queued:
        return queued(event.position or 0, event.eta_seconds)
    if event.total:
        return f"{MARKS[Status.running]} Rendering {event.percent}%"
    return f"{MARKS[Status.running]} Starting…"


def outcome(record: JobRecord) -> str:
    """The status line of a finished job: "✅ Done in 4 s", "⚠️ <why>", "✖️ Cancelled"."""
    mark = MARKS[record.status]
    if record.status is Status.done:
        took = ""
        if record.started_at and record.finished_at:
            took = f" in {duration(record.finished_at - record.started_at)}"
        return f"{mark} Done{took}"
    if record.status is Status.failed:
        return f"{mark} {plain(record.error) or 'That did not work out.'}"
    return f"{mark} Cancelled"


def status_line(record: JobRecord, event: Event) -> str:
    return outcome(record) if event.status.finished else progress(event)


def seeds(record: JobRecord) -> str:
    found = [output.seed for output in record.outputs]
    if not found:
        return f"seed {record.request.seed}"
    return f"seed {found[0]}" if len(found) == 1 else f"seeds {found[0]}–{found[-1]}"


def history_line(number: int, record: JobRecord, markup: Markup, *, when: str = "") -> str:
    """One job of a /history page: "1. ✅ 3f9a0c1b2d4e remix · classic · a watercolor cat · 2 images"
    (``when``: the face's marked-up time, if it has one)."""
    r = record.request
    prompt = clip(plain(r.prompt), 50) or "—"
    count = len(record.outputs)
    outputs = f" · {count} image{'s' if count != 1 else ''}" if count else ""
    words = markup.text(f"{record.action.value} · {r.model} · {prompt}{outputs}")
    return f"{number}. {MARKS[record.status]} {markup.code(record.id)} {words}" + (f" · {when}" if when else "")


class Markup(Protocol):
    """A face's markup. Every method takes plain text and returns it marked up, escaped."""

    def text(self, plain: str) -> str: ...
    def bold(self, plain: str) -> str: ...
    def code(self, plain: str) -> str: ...
    def user(self, origin: Origin) -> str: ...


class Plain:
    """No markup (the console)."""

    def text(self, plain: str) -> str:
        return plain

    def bold(self, plain: str) -> str:
        return plain

    def code(self, plain: str) -> str:
        return plain

    def user(self, origin: Origin) -> str:
        return origin.user_name or origin.user_id


@dataclass(frozen=True)
class Line:
    """A line of a message: ``show(text)`` marks it up; lines with an ``order`` may be clipped
    (lowest first) when the whole is over its limit."""

    text: str
    show: Callable[[str], str]
    order: int | None = None


def fit(lines: Sequence[Line], limit: int) -> str:
    """The lines joined, the clippable ones cut (in their order, each as little as needed) so that
    the marked-up whole is at most ``limit`` characters."""
    sizes = [len(line.text) for line in lines]

    def whole() -> str:
        return "\n".join(line.show(clip(line.text, size)) for line, size in zip(lines, sizes, strict=True))

    text = whole()
    for i in sorted((i for i, line in enumerate(lines) if line.order is not None), key=lambda i: lines[i].order or 0):
        if len(text) <= limit:
            break
        low, high = 0, sizes[i]  # the longest cut of line i that fits
        while low < high:
            sizes[i] = (low + high + 1) // 2
            low, high = (sizes[i], high) if len(whole()) <= limit else (low, sizes[i] - 1)
        sizes[i] = low
        text = whole()
    return clip(text, limit)


def info(record: JobRecord, markup: Markup, limit: int, *, repeat: str = "") -> str:
    """A job's full parameters and how to repeat it (``repeat``: what goes before the request text,
    e.g. "/remix "), within ``limit`` characters: long prompts are clipped, with an ellipsis."""
    m, r = markup, record.request

    def field(label: str, order: int | None = None, code: bool = False) -> Callable[[str], Line]:
        return lambda text: Line(
            text, lambda shown: f"{m.bold(label + ':')} {(m.code if code else m.text)(shown)}", order
        )

    state = f"{MARKS[record.status]} {record.status.value}"
    head = f"{m.bold('Job')} {m.code(record.id)} {m.text(f'· {record.action.value} · {state}')}"
    lines = [Line("", lambda _: head), field("Prompt", 0)(plain(r.prompt) or "—")]
    if read := reading(r):
        lines.append(field("Read as", 0)(plain(read)))
    if r.style:
        lines.append(field("Style")(r.style))
    if r.negative_prompt:
        lines.append(field("Negative", 1)(plain(r.negative_prompt)))
    lines.append(field("Settings")(" · ".join(settings(record))))
    if record.outputs:
        made = ", ".join(f"#{o.index + 1} {o.width}×{o.height} seed {o.seed}" for o in record.outputs)
        lines.append(field("Outputs", 4)(made))
    if record.parent_job:
        which = f" #{record.parent_output + 1}" if record.parent_output is not None else ""
        lines.append(field("From", code=True)(f"{record.parent_job}{which}"))
    if record.engine:
        note = f" ({plain(record.note)})" if record.note else ""
        lines.append(field("Ran on", 3)(f"{plain(record.engine)}{note}"))
    if record.error:
        lines.append(field("Error", 2)(plain(record.error)))
    by = m.user(record.origin)
    lines.append(Line("", lambda _: f"{m.bold('Requested by:')} {by}"))
    lines.append(field("Repeat", 5, code=True)(repeat + format_request(r)))
    return fit(lines, limit)


def settings(record: JobRecord) -> list[str]:
    """A job's settings as "name value" words: every flag it sets but the negative prompt."""
    return [text.removeprefix("--") for flag, text in written_flags(record.request) if flag.field != "negative_prompt"]


def reading(request: Request) -> str | None:
    """How the prompt was read, when it used syntax (weights, BREAK): ``(cat:1.21) on a mat``; None otherwise."""
    return describe_prompt(request.prompt)


STYLE_LINE = 120  # characters of a style's summary in /styles


def styles_text(listing: StyleList, markup: Markup, limit: int) -> str:
    """/styles: the global styles, this chat's own, and the style model's built-in ones when it is here."""
    m, shared, own, transfer = markup, listing.shared, listing.own, listing.transfer
    lines = [m.bold("Styles") + m.text(" — add --style NAME to a prompt, e.g. a fox --style watercolor")]
    lines += [f"{m.code(style.name)} {m.text('— ' + clip(plain(style.summary()), STYLE_LINE))}" for style in shared]
    if own:
        lines.append(m.bold("This chat's own:"))
        lines += [f"{m.code(s.name)} {m.text('— ' + clip(plain(s.summary()), STYLE_LINE))}" for s in own]
    if transfer:
        lines.append(m.text("The style model's own (--style starry picks that model): " + ", ".join(TRANSFER_STYLES)))
    if not shared and not own and not transfer:
        lines.append(m.text("No styles here yet."))
    lines.append(m.text("Admins add their own: /server style add NAME a prompt with {prompt} --no … --strength …"))
    return clip("\n".join(lines), limit)


def loras_text(loras: Sequence[tuple[str, str]], markup: Markup, limit: int) -> str:
    """/loras: each LoRA's name and the base model it was made for."""
    m = markup
    if not loras:
        return m.text("No LoRAs on this server (the operator puts .safetensors files in REMIXBOT_LORA_DIR).")
    lines = [m.bold("LoRAs") + m.text(" — put <lora:NAME:0.8> in a prompt (the number is its weight)")]
    lines += [f"{m.code(name)} {m.text('· ' + base)}" for name, base in loras]
    return clip("\n".join(lines), limit)
