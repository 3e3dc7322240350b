"""One request grammar for every platform: a prompt plus ``--flags``.

``a watercolor painting of the harbor --strength 0.55 --model fast --seed 42 --no blurry, text``

Every mistake is a ``RequestError`` whose text is a friendly one-liner for the chat; unknown
flags are never ignored. ``format_request`` is the inverse of ``parse_request``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from bot.jobs import Action, Request
from bot.loras import MAX_WEIGHT as MAX_LORA_WEIGHT
from bot.loras import MIN_WEIGHT as MIN_LORA_WEIGHT
from bot.loras import LoraError, split_loras, with_lora_tags
from bot.models import Models
from bot.prompts import check_prompt
from bot.settings import Limits

MAX_SEED = 2**32 - 1
MAX_CFG = 30.0
MAX_IMAGE_CFG = 10.0
SCALES = (2, 4)
MAX_COMPARE = 3
MOTIONS = ("low", "high")
MAX_FRAMES = 120
MAX_FPS = 60


class RequestError(ValueError):
    """A request that can't be run; ``str(error)`` is a friendly message for the chat."""


@dataclass(frozen=True)
class Defaults:
    """A user's saved settings. ``strength`` None: the model's own default strength."""

    model: str = "classic"
    strength: float | None = None
    num_images_per_prompt: int = 1


# Canonical flag → an example value for messages (None: a bare switch).
FLAGS: dict[str, str | None] = {
    "strength": "0.55",
    "model": "fast",
    "seed": "42",
    "no": "blurry, text",
    "n": "4",
    "size": "1024",
    "steps": "30",
    "cfg": "7",
    "image-cfg": "1.5",
    "scale": "2",
    "compare": "fast,classic",
    "show-source": None,
    "motion": "high",
    "frames": "48",
    "fps": "24",
    "ref-scale": "0.6",
}
ALIASES = {"s": "strength", "m": "model", "negative": "no"}

HELP = """\
Send a picture with a prompt, plus any of these options:
--strength 0.55 (-s): how much to change, 0 to 1
--model fast (-m): which model to use
--seed 42: repeat a result exactly
--no blurry, text: what to avoid (up to the next option)
--n 4: how many images
--size 1024: longest side in pixels
--steps 30: more steps, more detail, slower
--cfg 7: how closely to follow the prompt (0 to 30)
--image-cfg 1.5: how closely to keep the picture (edit models, 0 to 10)
--scale 2: upscale factor, 2 or 4
--compare fast,classic: run the same request on other models too
--show-source: show the source image next to the results
--motion high: how much an animation moves, low or high
--frames 48: frames in an animation (up to 120)
--fps 24: frames per second of an animation
--ref-scale 0.6: how strongly reference images steer the result, 0 to 1
Example: a watercolor painting of the harbor --strength 0.55 --seed 42 --no blurry, text"""

# A flag: --name, -name, or a phone's autocorrected —name / –name; an optional =value.
_FLAG = re.compile(r"^(?:--?|[—–][—–-]?)(?P<name>[A-Za-z][\w-]*)(?:=(?P<value>.*))?$", re.DOTALL)
# A token: a double-quoted run (straight or curly) or a run of non-space characters.
_TOKEN = re.compile(r'"[^"]*"|“[^”]*”|\S+')
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "„": "“"}


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    text: str

    @property
    def flag(self) -> re.Match[str] | None:
        return _FLAG.match(self.text)


def parse_request(text: str, *, defaults: Defaults, limits: Limits, models: Models) -> Request:
    """Parse ``prompt --flag value …`` into a Request, applying the user's defaults."""
    prompt, values = split_flags(text)
    model = pick_model(values.get("model"), defaults, models)
    prompt, loras = pick_loras(unquote(prompt), models)
    negative = values.get("no", "")
    check_length("prompt", prompt, limits.max_prompt_length)
    check_length("negative prompt", negative, limits.max_prompt_length)
    for text in (prompt, negative):
        if reason := check_prompt(text):
            raise RequestError(reason)
    return Request(
        prompt=prompt,
        model=model,
        strength=pick_strength(values.get("strength"), defaults, models[model].strength),
        negative_prompt=negative,
        seed=optional(values, "seed", lambda raw: to_int("seed", raw, 0, MAX_SEED)),
        num_images_per_prompt=pick_count(values.get("n"), defaults, limits),
        size=optional(values, "size", lambda raw: to_int("size", raw, limits.min_size, limits.max_size)),
        num_inference_steps=optional(values, "steps", lambda raw: to_int("steps", raw, 1, limits.max_steps)),
        guidance_scale=optional(values, "cfg", lambda raw: to_float("cfg", raw, 0, MAX_CFG)),
        image_guidance_scale=optional(values, "image-cfg", lambda raw: to_float("image-cfg", raw, 0, MAX_IMAGE_CFG)),
        scale=optional(values, "scale", to_scale),
        compare=pick_compare(values.get("compare"), model, models),
        show_source=to_switch(values.get("show-source")),
        motion=optional(values, "motion", to_motion),
        num_frames=optional(values, "frames", lambda raw: to_int("frames", raw, 2, MAX_FRAMES)),
        fps=optional(values, "fps", lambda raw: to_int("fps", raw, 1, MAX_FPS)),
        ip_adapter_scale=optional(values, "ref-scale", lambda raw: to_float("ref-scale", raw, 0, 1)),
        loras=loras,
    )


def pick_loras(prompt: str, models: Models) -> tuple[str, tuple[tuple[str, float], ...]]:
    """The prompt without its <lora:…> tags, and the LoRAs they name (known ones only) at their weights."""
    try:
        text, tags = split_loras(prompt, models.loras)
    except LoraError as error:
        raise RequestError(str(error)) from None
    loras = []
    for name, raw in tags:
        loras.append((name, to_float(f"the weight of LoRA {name}", raw, MIN_LORA_WEIGHT, MAX_LORA_WEIGHT)))
    return text, tuple(loras)


def split_flags(text: str) -> tuple[str, dict[str, str]]:
    """The prompt (the text outside flags) and each flag's raw value, by canonical name."""
    tokens = [Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    values: dict[str, str] = {}
    prompt_parts: list[str] = []
    index = 0
    while index < len(tokens):
        match = tokens[index].flag
        if match is None:
            end = next_flag(tokens, index)
            prompt_parts.append(text[tokens[index].start : tokens[end - 1].end])
            index = end
            continue
        name = canonical(match["name"])
        if name in values:
            raise RequestError(f"--{name} is given twice; use it once.")
        values[name], index = take_value(text, tokens, index, name, match["value"])
    return " ".join(prompt_parts).strip(), values


def next_flag(tokens: list[Token], index: int) -> int:
    """The index of the first flag token after ``index`` (or the end)."""
    index += 1
    while index < len(tokens) and tokens[index].flag is None:
        index += 1
    return index


def canonical(written: str) -> str:
    """The canonical flag name for what the user typed; unknown flags suggest the closest one."""
    name = written.lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name in FLAGS:
        return name
    known = list(FLAGS) + [alias for alias in ALIASES if len(alias) > 1]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        raise RequestError(f"I don't know the option --{written}; did you mean --{close[0]}?")
    raise RequestError(f"I don't know the option --{written}; send /help to see the options.")


def take_value(text: str, tokens: list[Token], index: int, name: str, inline: str | None) -> tuple[str, int]:
    """A flag's raw value and the index after it: ``--flag value``, ``--flag=value`` or bare."""
    if FLAGS[name] is None:
        return (inline if inline is not None else "yes"), index + 1
    start = index + 1
    end = value_end(tokens, start, name, inline)
    parts = [inline] if inline is not None else []
    if end > start:
        parts.append(text[tokens[start].start : tokens[end - 1].end])
    value = unquote(" ".join(part for part in parts if part).strip())
    if not value:
        raise RequestError(f"--{name} needs a value, e.g. --{name} {FLAGS[name]}")
    return value, end


def value_end(tokens: list[Token], start: int, name: str, inline: str | None) -> int:
    """The index after the tokens that belong to a flag's value.

    ``--no`` runs until the next flag; ``--compare a, b`` goes on after a trailing comma; any
    other flag takes the next token, or none when its value came after ``=``.
    """
    if name == "no":
        return next_flag(tokens, start - 1)
    end = start
    more = inline is None or (name == "compare" and inline.endswith(","))
    while more and end < len(tokens) and tokens[end].flag is None:
        end += 1
        more = name == "compare" and tokens[end - 1].text.endswith(",")
    return end


def unquote(value: str) -> str:
    """Strip one pair of matching quotes (straight or curly) around a whole value."""
    if len(value) >= 2 and _QUOTES.get(value[0]) == value[-1] and value[-1] not in value[1:-1]:
        return value[1:-1].strip()
    return value


def check_length(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise RequestError(f"The {what} is too long ({len(text)} characters); the limit is {limit}.")


def resolve_model(name: str, models: Models) -> str | None:
    """A registry name for what the user typed (case-insensitive), or None."""
    if name in models:
        return name
    lowered = {known.lower(): known for known in models.names()}
    return lowered.get(name.lower())


def pick_model(raw: str | None, defaults: Defaults, models: Models) -> str:
    """The asked-for model, else the user's default, else the registry's default remix model."""
    if raw is None:
        return defaults.model if defaults.model in models else models.for_action(Action.remix).name
    return require_model(raw, models)


def require_model(raw: str, models: Models) -> str:
    name = resolve_model(raw, models)
    if name is None:
        close = difflib.get_close_matches(raw.lower(), models.names(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RequestError(f"There's no model called {raw!r}{hint}. Models: {', '.join(models.names())}.")
    return name


def pick_strength(raw: str | None, defaults: Defaults, model_strength: float) -> float:
    if raw is not None:
        return to_float("strength", raw, 0, 1)
    return defaults.strength if defaults.strength is not None else model_strength


def pick_count(raw: str | None, defaults: Defaults, limits: Limits) -> int:
    if raw is not None:
        return to_int("n", raw, 1, limits.max_num_images)
    return max(1, min(defaults.num_images_per_prompt, limits.max_num_images))


def pick_compare(raw: str | None, model: str, models: Models) -> tuple[str, ...]:
    """1 to 3 other registry models, duplicates (and the main model) dropped."""
    if raw is None:
        return ()
    names: list[str] = []
    for part in re.split(r"[,\s]+", raw):
        if part:
            name = require_model(part, models)
            if name != model and name not in names:
                names.append(name)
    if not names:
        raise RequestError(f"--compare needs at least one model other than {model}.")
    if len(names) > MAX_COMPARE:
        raise RequestError(f"--compare takes up to {MAX_COMPARE} other models, got {len(names)}.")
    return tuple(names)


def optional(values: dict[str, str], name: str, convert: Any) -> Any:
    """``convert(value)`` when the flag was given, else None."""
    return convert(values[name]) if name in values else None


def to_float(label: str, raw: str, low: float, high: float) -> float:
    """A number in ``low..high``; ``0,55`` (a decimal comma) is read as 0.55."""
    text = raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"{label} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{label} must be between {number(low)} and {number(high)}, got {raw}")
    return value


def to_int(label: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"{label} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise RequestError(f"{label} must be between {low} and {high}, got {raw}")
    return value


def to_scale(raw: str) -> int:
    text = raw.lower().strip("x")
    if text not in {str(scale) for scale in SCALES}:
        raise RequestError(f"scale must be 2 or 4, got {raw}")
    return int(text)


def to_motion(raw: str) -> str:
    if raw.lower() not in MOTIONS:
        raise RequestError(f"motion must be low or high, got {raw}")
    return raw.lower()


def to_switch(raw: str | None) -> bool:
    if raw is None:
        return False
    if raw.lower() in ("yes", "true", "on", "1"):
        return True
    if raw.lower() in ("no", "false", "off", "0"):
        return False
    raise RequestError(f"--show-source is a switch; use it without a value, got {raw!r}")


def number(value: float) -> str:
    """A float as short text that reads back exactly: 7.0 → "7", 0.55 → "0.55"."""
    return repr(float(value)).removesuffix(".0")


def format_request(request: Request) -> str:
    """The request as chat text that ``parse_request`` reads back to the same Request."""
    prompt = with_lora_tags(request.prompt, request.loras)
    parts = [quote_prompt(prompt)] if prompt else []
    parts += [f"--model {request.model}", f"--strength {number(request.strength)}"]
    if request.seed is not None:
        parts.append(f"--seed {request.seed}")
    if request.num_images_per_prompt != 1:
        parts.append(f"--n {request.num_images_per_prompt}")
    if request.size is not None:
        parts.append(f"--size {request.size}")
    if request.num_inference_steps is not None:
        parts.append(f"--steps {request.num_inference_steps}")
    if request.guidance_scale is not None:
        parts.append(f"--cfg {number(request.guidance_scale)}")
    if request.image_guidance_scale is not None:
        parts.append(f"--image-cfg {number(request.image_guidance_scale)}")
    if request.scale is not None:
        parts.append(f"--scale {request.scale}")
    if request.compare:
        parts.append(f"--compare {','.join(request.compare)}")
    if request.show_source:
        parts.append("--show-source")
    if request.motion is not None:
        parts.append(f"--motion {request.motion}")
    if request.num_frames is not None:
        parts.append(f"--frames {request.num_frames}")
    if request.fps is not None:
        parts.append(f"--fps {request.fps}")
    if request.ip_adapter_scale is not None:
        parts.append(f"--ref-scale {number(request.ip_adapter_scale)}")
    if request.negative_prompt:  # last: its value runs to the end
        parts.append(f"--no {quote_prompt(request.negative_prompt)}")
    return " ".join(parts)


def quote_prompt(text: str) -> str:
    """Wrap text that is itself wholly quoted in another pair, so parsing strips only that pair."""
    if unquote(text) == text:
        return text
    for left, right in (('"', '"'), ("“", "”"), ("‘", "’")):
        if unquote(f"{left}{text}{right}") == text:
            return f"{left}{text}{right}"
    return text


def request_from_parameters(
    params: dict[str, Any],
    *,
    defaults: Defaults,
    models: Models,
    limits: Limits | None = None,
) -> Request:
    """A Request reusing the settings ``images.parse_parameters`` found, kept within the limits."""
    limits = limits or Limits()
    model = resolve_model(str(params.get("model", "")), models) or pick_model(None, defaults, models)
    strength = params.get("strength")
    if strength is None:
        strength = pick_strength(None, defaults, models[model].strength)
    seed = params.get("seed")
    prompt, loras = pick_loras(str(params.get("prompt", ""))[: limits.max_prompt_length], models)
    return Request(
        prompt=prompt,
        loras=loras,
        model=model,
        strength=clamp(strength, 0, 1),
        negative_prompt=str(params.get("negative_prompt", ""))[: limits.max_prompt_length],
        seed=seed if isinstance(seed, int) and 0 <= seed <= MAX_SEED else None,
        num_images_per_prompt=pick_count(None, defaults, limits),
        size=size_from(params, limits),
        num_inference_steps=maybe_clamp(params.get("num_inference_steps"), 1, limits.max_steps),
        guidance_scale=maybe_clamp(params.get("guidance_scale"), 0, MAX_CFG),
        image_guidance_scale=maybe_clamp(params.get("image_guidance_scale"), 0, MAX_IMAGE_CFG),
    )


def size_from(params: dict[str, Any], limits: Limits) -> int | None:
    """The longest side of the original's ``Size``, within the limits."""
    if "width" not in params or "height" not in params:
        return None
    return int(clamp(max(params["width"], params["height"]), limits.min_size, limits.max_size))


def clamp(value: Any, low: float, high: float) -> Any:
    return min(max(value, low), high)


def maybe_clamp(value: Any, low: float, high: float) -> Any:
    return None if value is None else clamp(value, low, high)
