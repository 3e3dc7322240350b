"""The request flags, once: each flag's name, aliases, kind of value, bounds, example, help text and
the ``Request`` field it fills.

Everything else is derived from this table: reading ``--flag value`` (``bot.requests``), writing a
request back as text (``format_request``), the /help text (``help_text``) and Discord's /remix
options (``adapters/discord/commands.py``). Bounds come from ``Limits`` and the constants below, so
no face can offer a value the core would refuse.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from bot.settings import Limits

MAX_SEED = 2**32 - 1
MAX_CFG = 30.0
MAX_IMAGE_CFG = 10.0
SCALES = (2, 4)
MAX_COMPARE = 3
MOTIONS = ("low", "high")
MAX_FRAMES = 120
MAX_FPS = 60
SIZE_WORDS = (("1k", 1024), ("2k", 2048), ("4k", 4096))  # --size 2k: the common output sizes by name
MAX_BACKGROUND = 200  # --background: a colour or a short prompt

# What a flag's value is: a whole number, a number, text, a bare switch, or a list of model names.
Kind = Literal["int", "float", "text", "switch", "models"]
# A flag's value once read.
Value = int | float | str | bool | tuple[str, ...]
# A flag's value as a user gave it: the text after the flag, or a face's typed option.
Given = str | int | float | bool
N = TypeVar("N", int, float)


class RequestError(ValueError):
    """A request that can't be run; ``str(error)`` is a friendly message for the chat."""


@dataclass(frozen=True)
class Flag:
    name: str  # --name
    field: str  # the Request field it fills (diffusers' argument names)
    kind: Kind
    example: str  # a value for messages and /help ("" for a switch)
    help: str  # what it does, in a few words (no bounds: they are added from low/high/choices)
    aliases: tuple[str, ...] = ()
    option: str = ""  # its name as a keyword (Discord's option); "" → the name with "_" for "-"
    low: float | None = None
    high: float | None = None
    choices: tuple[int | str, ...] = ()
    max_length: int | None = None  # text: the longest value
    words: tuple[tuple[str, int], ...] = ()  # int: values also written as a word ("2k" for 2048)
    to_next_flag: bool = False  # the value runs up to the next flag (and is written last)
    applied: bool = False  # applied to the other fields when the request is built: recorded, never written back

    @property
    def keyword(self) -> str:
        return self.option or self.name.replace("-", "_")

    @property
    def bounds(self) -> str:
        """The values it takes, for help texts: "0 to 1", "2 or 4", "" when any will do."""
        if self.choices:
            return " or ".join(str(choice) for choice in self.choices)
        if self.low is not None and self.high is not None:
            return f"{number(self.low)} to {number(self.high)}"
        return ""

    def describe(self) -> str:
        """The help text with the bounds: "how much to change (0 to 1)"."""
        return f"{self.help} ({self.bounds})" if self.bounds else self.help

    def take(self, given: Given) -> Value:
        """The flag's value from what the user gave: text is read, a typed option is checked."""
        if isinstance(given, str):
            return self.read(given)
        return self.check(given)

    def read(self, raw: str) -> Value:
        """The value of ``--name raw``. Raises RequestError."""
        if self.kind == "switch":
            return to_switch(self.name, raw)
        if self.kind == "models":
            return tuple(name for name in re.split(r"[,\s]+", raw) if name)
        if self.choices:
            return self.choose(raw)
        if self.kind == "int":
            named = dict(self.words).get(raw.strip().lower())
            return self.within(to_int(self.name, raw) if named is None else named, raw)
        if self.kind == "float":
            return self.within(to_float(self.name, raw), raw)
        return raw.strip()

    def check(self, value: int | float | bool) -> Value:
        """A typed value (a face's option), checked as ``read`` checks text. Raises RequestError."""
        if self.kind == "switch" and isinstance(value, bool):
            return value
        if self.kind in ("int", "float") and not isinstance(value, bool):
            if self.choices:
                return self.choose(str(value))
            if self.kind == "int" and value == int(value):
                return self.within(int(value), str(value))
            if self.kind == "float":
                return self.within(float(value), number(value))
        raise RequestError(f"{self.name} can't be {value!r}")

    def choose(self, raw: str) -> int | str:
        """The choice ``raw`` names ("x2" and "2x" name 2). Raises RequestError."""
        text = raw.strip().lower()
        if self.kind == "int":
            text = text.strip("x")
        for choice in self.choices:
            if text == str(choice):
                return choice
        raise RequestError(f"{self.name} must be {self.bounds}, got {raw}")

    def within(self, value: N, shown: str) -> N:
        """``value`` when it is within the bounds (``shown`` is how the user wrote it). Raises RequestError."""
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not math.isfinite(value) or not low <= value <= high:
            raise RequestError(f"{self.name} must be between {number(low)} and {number(high)}, got {shown}")
        return value

    def clamp(self, value: float) -> float:
        """``value`` moved into the bounds (for settings read from a file, not typed by a user)."""
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        return min(max(value, low), high)

    def write(self, value: Value) -> str:
        """``--name value`` as ``read`` reads it back ("--show-source" for a switch that is on)."""
        if self.kind == "switch":
            return f"--{self.name}" if value else ""
        if isinstance(value, tuple):
            return f"--{self.name} {','.join(value)}"
        if isinstance(value, float):
            return f"--{self.name} {number(value)}"
        return f"--{self.name} {value}"


class Flags(Mapping[str, Flag]):
    """The flags by name, in the order faces show them."""

    def __init__(self, *flags: Flag):
        self._flags = {flag.name: flag for flag in flags}
        self.aliases = {alias: flag.name for flag in flags for alias in flag.aliases}

    def __getitem__(self, name: str) -> Flag:
        return self._flags[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flags)

    def __len__(self) -> int:
        return len(self._flags)


@functools.cache
def flag_table(limits: Limits) -> Flags:
    """Every flag, with its bounds for these limits."""
    return Flags(
        Flag("model", "model", "text", "fast", "which model to use", aliases=("m",)),
        Flag("strength", "strength", "float", "0.55", "how much to change", aliases=("s",), low=0, high=1),
        Flag(
            "no",
            "negative_prompt",
            "text",
            "blurry, text",
            "what to avoid",
            aliases=("negative",),
            option="negative",
            max_length=limits.max_prompt_length,
            to_next_flag=True,
        ),
        Flag("seed", "seed", "int", "42", "repeat a result exactly", low=0, high=MAX_SEED),
        Flag(
            "n",
            "num_images_per_prompt",
            "int",
            "4",
            "how many images",
            option="count",
            low=1,
            high=limits.max_num_images,
        ),
        Flag(
            "size",
            "size",
            "int",
            "1024",
            f"longest side in pixels (1k, 2k, 4k too); above {limits.max_size} it is upscaled after rendering",
            low=limits.min_size,
            high=max(limits.max_size, limits.max_output_size),
            words=SIZE_WORDS,
        ),
        Flag(
            "steps", "num_inference_steps", "int", "30", "more steps, more detail, slower", low=1, high=limits.max_steps
        ),
        Flag("cfg", "guidance_scale", "float", "7", "how closely to follow the prompt", low=0, high=MAX_CFG),
        Flag(
            "image-cfg",
            "image_guidance_scale",
            "float",
            "1.5",
            "how closely to keep the picture, for edit models",
            low=0,
            high=MAX_IMAGE_CFG,
        ),
        Flag("scale", "scale", "int", "2", "the Upscale button's factor", choices=SCALES),
        Flag("compare", "compare", "models", "fast,classic", f"also run it on up to {MAX_COMPARE} other models"),
        Flag("show-source", "show_source", "switch", "", "show your picture next to each result"),
        Flag("motion", "motion", "text", "high", "how much the Animate button's clip moves", choices=MOTIONS),
        Flag("frames", "num_frames", "int", "48", "frames in the Animate button's clip", low=2, high=MAX_FRAMES),
        Flag("fps", "fps", "int", "24", "frames per second of the Animate button's clip", low=1, high=MAX_FPS),
        Flag("ref-scale", "ip_adapter_scale", "float", "0.6", "how strongly reference images steer", low=0, high=1),
        Flag(
            "style",
            "style",
            "text",
            "cinematic",
            "a named preset of prompt, model and strength (/styles)",
            applied=True,
        ),
        Flag(
            "background",
            "background",
            "text",
            "white",
            "the Cut out button's new background: a colour (white, #223344), blur, or a prompt",
            aliases=("bg",),
            max_length=MAX_BACKGROUND,
            to_next_flag=True,
        ),
    )


EXAMPLE = "a watercolor painting of the harbor --strength 0.55 --seed 42 --no blurry, text"
# How prompts are read on the diffusion models (bot/prompts.py, bot/loras.py, bot/styles.py), for /help.
SYNTAX = (
    "Prompt syntax (diffusion models):",
    "(word:1.3) weighs a word up, (word) ×1.1, [word] ÷1.1, \\( is a literal bracket: a (red:1.3) fox in [fog]",
    "BREAK starts a new 77-token chunk; long prompts are chunked, not cut: a castle BREAK a stormy sky",
    "<lora:name:0.8> applies a LoRA at that weight (/loras lists them): a fox <lora:pixel_art:0.8>",
    "A preset prompt, model and strength (/styles lists them): a fox --style watercolor",
    "A picture made by AUTOMATIC1111, ComfyUI, NovelAI, InvokeAI, Fooocus or me, sent with no text,"
    " is remixed with the prompt and settings it carries.",
)


def help_text(limits: Limits) -> str:
    """/help: every flag with an example value, its aliases, what it does and the values it takes."""
    lines = ["Send a picture with a prompt, plus any of these options:"]
    for flag in flag_table(limits).values():
        usage = f"--{flag.name} {flag.example}".rstrip()
        if flag.aliases:
            usage += " (" + ", ".join(("-" if len(alias) == 1 else "--") + alias for alias in flag.aliases) + ")"
        until = ", up to the next option" if flag.to_next_flag else ""
        lines.append(f"{usage}: {flag.describe()}{until}")
    return "\n".join([*lines, "", *SYNTAX, "", f"Example: {EXAMPLE}"])  # the example last: it reads to the end


def to_float(label: str, raw: str) -> float:
    """A number; ``0,55`` (a decimal comma) is read as 0.55."""
    text = raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw
    try:
        return float(text)
    except ValueError:
        raise RequestError(f"{label} must be a number, got {raw!r}") from None


def to_int(label: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"{label} must be a whole number, got {raw!r}") from None


def to_switch(name: str, raw: str) -> bool:
    if raw.lower() in ("yes", "true", "on", "1"):
        return True
    if raw.lower() in ("no", "false", "off", "0"):
        return False
    raise RequestError(f"--{name} is a switch; use it without a value, got {raw!r}")


def number(value: float) -> str:
    """A float as short text that reads back exactly: 7.0 → "7", 0.55 → "0.55"."""
    return repr(float(value)).removesuffix(".0")
