"""The one schema that the bot and the engine share.

Field names follow diffusers' argument names (``prompt``, ``negative_prompt``, ``strength``,
``num_inference_steps``, ``guidance_scale``, ``num_images_per_prompt``) from the chat option all
the way down to the pipeline call. Everything here is a frozen dataclass that turns into plain
data (``to_data``) to cross the queue and back (``from_data``); errors cross as data too
(``Result.error`` holds a message that is safe to show to the user).
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast


class Action(enum.StrEnum):
    """What a job does to its source. Buttons and chat commands share this vocabulary."""

    remix = "remix"
    reroll = "reroll"
    vary = "vary"
    upscale = "upscale"
    fixface = "fixface"
    animate = "animate"
    outpaint = "outpaint"  # zoom out or pan: a larger canvas, its new border filled in
    cutout = "cutout"  # the subject on a transparent (or new) background


class Status(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Status.done, Status.failed, Status.cancelled)


@dataclass(frozen=True)
class Request:
    """A remix request as the user asked for it (after per-user defaults are applied)."""

    prompt: str
    model: str
    strength: float
    negative_prompt: str = ""
    seed: int | None = None
    num_images_per_prompt: int = 1
    size: int | None = None  # longest side of the output, in pixels; None: the model's default
    num_inference_steps: int | None = None  # None: the model's default
    guidance_scale: float | None = None  # None: the model's default
    image_guidance_scale: float | None = None  # instruction-edit models only
    scale: int | None = None  # upscale factor (2 or 4)
    compare: tuple[str, ...] = ()  # other models to run the same request through
    show_source: bool = False
    motion: str | None = None  # animate: "low" or "high"; None: the model's default
    num_frames: int | None = None  # animate: frames in the clip; None: the model's default
    fps: int | None = None  # animate: frames per second; None: the model's default
    ip_adapter_scale: float | None = None  # how strongly reference images steer; None: the model's default
    loras: tuple[tuple[str, float], ...] = ()  # (name, weight) read from <lora:name:weight> tags in the prompt
    zoom: float | None = None  # outpaint: zoom out 1.5 or 2 times around the picture
    pan: str | None = None  # outpaint: "left", "right", "up" or "down": half the picture added on that side
    style: str = ""  # the --style preset applied (bot.styles): the fields above already hold what it set
    background: str | None = None  # cut out: a colour, "blur" or a prompt for a new background; None: transparent


@dataclass(frozen=True)
class Origin:
    """Where a job came from and where its results go back to."""

    platform: str  # "cli", "console", "telegram", "discord"
    user_id: str  # the platform's user id
    chat_id: str = ""  # the platform's chat/channel id
    user_name: str = ""
    guild_id: str = ""  # Discord server, or "" elsewhere
    message_id: str = ""  # the message that asked for the job
    private: bool = False  # the chat is the user's own with the bot (a DM, the console): see bot.access
    parent_id: str = ""  # Discord: the channel a thread belongs to ("" elsewhere): server channel rules follow it


@dataclass(frozen=True)
class Job:
    """A unit of engine work: one action on one source image with one resolved request."""

    id: str
    action: Action
    request: Request  # seed resolved: the engine never picks one
    image: bytes  # the source, PNG-encoded RGB, already decoded safely and size-capped
    origin: Origin
    group: str = "classic"  # the queue (model group) that runs it
    references: tuple[bytes, ...] = ()  # up to 3 reference images, PNG-encoded RGB
    parent_job: str | None = None
    parent_output: int | None = None
    created_at: float = field(default_factory=time.time)
    # the engine classifies the source before anything else (the bot process could not: Redis mode
    # with a classifier that needs torch); a flagged one fails with ``Result.refused``
    screen_source: bool = False

    def to_data(self) -> dict[str, Any]:
        return cast(dict[str, Any], to_data(self))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Job:
        return cast(Job, from_data(cls, data))


@dataclass(frozen=True)
class Verdict:
    """A content classifier's word on one picture (or one clip: its worst frame)."""

    flagged: bool
    score: float = 0.0  # 0..1: how sure the classifier is of what it flagged (or of the worst it saw)
    label: str = ""  # what it saw, e.g. "FEMALE_BREAST_EXPOSED"; "" for a classifier without labels


@dataclass(frozen=True)
class Output:
    """One produced file: an image (PNG with its parameters) or a clip."""

    index: int
    seed: int
    data: bytes
    media_type: str = "image/png"
    width: int = 0
    height: int = 0
    verdict: Verdict | None = None  # the safety classifier's word (engine/safety.py); None: not checked

    @property
    def extension(self) -> str:
        return {"image/png": "png", "video/mp4": "mp4", "image/gif": "gif"}.get(self.media_type, "bin")


@dataclass(frozen=True)
class Result:
    """What the engine hands back. ``error`` is user-safe text; details stay in the worker log."""

    job_id: str
    status: Status
    outputs: tuple[Output, ...] = ()
    error: str = ""
    engine: str = ""  # what actually ran, e.g. "classic" or "diffusers StableDiffusionImg2ImgPipeline"
    note: str = ""  # e.g. "classic fallback: no weights configured"
    seconds: float = 0.0
    refused: Verdict | None = None  # the engine refused the source (``Job.screen_source``): the classifier's word

    def to_data(self) -> dict[str, Any]:
        return cast(dict[str, Any], to_data(self))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Result:
        return cast(Result, from_data(cls, data))


@dataclass(frozen=True)
class Event:
    """A job's progress as every face sees it."""

    job_id: str
    status: Status
    position: int | None = None  # while queued: 1 is next
    step: int = 0  # while running: step of total
    total: int = 0
    result: Result | None = None  # when finished
    eta_seconds: float | None = None  # while queued: about when the result is ready; None: not known yet
    preview: bytes = b""  # while running: a small JPEG of the current latents (≤256 px), b"" when none

    @property
    def percent(self) -> int:
        return int(100 * self.step / self.total) if self.total else 0

    def to_data(self) -> dict[str, Any]:
        return cast(dict[str, Any], to_data(self))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Event:
        return cast(Event, from_data(cls, data))


class JobCancelled(Exception):
    """Raised inside the engine (from the progress callback) when a job's cancellation is seen."""


# progress(step, total): called by the engine at every step; raises JobCancelled to stop the job.
Progress = Callable[[int, int], None]


def new_job_id() -> str:
    """A short id that fits in button ids and file names: 12 hex characters."""
    return secrets.token_hex(6)


def to_data(obj: Any) -> Any:
    """A dataclass tree as plain data (dicts, lists, str, int, float, bytes, None)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [to_data(item) for item in obj]
    return obj


def from_data(cls: Any, data: dict[str, Any]) -> Any:
    """The inverse of ``to_data`` for the classes in this module."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _convert(_FIELD_TYPES.get((cls, f.name)), data[f.name])
    return cls(**kwargs)


def _convert(kind: Any, value: Any) -> Any:
    if value is None or kind is None:
        return value
    if isinstance(kind, tuple):  # ("tuple", item_kind)
        return tuple(_convert(kind[1], item) for item in value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if dataclasses.is_dataclass(kind):
        return from_data(kind, value)
    return value


_FIELD_TYPES: dict[tuple[type, str], Any] = {
    (Request, "compare"): ("tuple", None),
    (Request, "loras"): ("tuple", ("tuple", None)),
    (Job, "action"): Action,
    (Job, "request"): Request,
    (Job, "origin"): Origin,
    (Job, "references"): ("tuple", None),
    (Result, "status"): Status,
    (Result, "outputs"): ("tuple", Output),
    (Result, "refused"): Verdict,
    (Output, "verdict"): Verdict,
    (Event, "status"): Status,
    (Event, "result"): Result,
}
