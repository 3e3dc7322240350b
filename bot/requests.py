"""One request grammar for every platform: a prompt plus ``--flags``.

``a watercolor painting of the harbor --strength 0.55 --model fast --seed 42 --no blurry, text``

Every mistake is a ``RequestError`` whose text is a friendly one-liner for the chat; unknown
flags are never ignored. ``format_request`` is the inverse of ``parse_request``. The flags
themselves (names, aliases, bounds, help) are one table, in ``bot.flags``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from bot.flags import MAX_BACKGROUND, MAX_COMPARE, MAX_SEED, Flag, Flags, Given, Value, flag_table, number, to_float
from bot.flags import RequestError as RequestError  # the grammar's one error, raised by the table too
from bot.jobs import Action, Request
from bot.loras import MAX_WEIGHT as MAX_LORA_WEIGHT
from bot.loras import MIN_WEIGHT as MIN_LORA_WEIGHT
from bot.loras import LoraError, lora_tags, split_loras, with_lora_tags
from bot.models import Models
from bot.prompts import check_prompt
from bot.settings import Limits
from bot.styles import PLACE, TRANSFER_KIND, Style, transfer_style
from bot.text import neutral


@dataclass(frozen=True)
class Defaults:
    """A user's saved settings. ``strength`` None: the model's own default strength."""

    model: str = "classic"
    strength: float | None = None
    num_images_per_prompt: int = 1


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


def parse_request(
    text: str, *, defaults: Defaults, limits: Limits, models: Models, given: Mapping[str, Given] | None = None
) -> Request:
    """Parse ``prompt --flag value …`` into a Request, applying the user's defaults.

    ``given``: flag values a face took apart from the text (Discord's typed options), by flag name.
    Control and format characters go first (``--n\u200b 4`` is ``--n 4``, not prompt text).
    """
    flags = flag_table(limits)
    prompt, written = split_flags(neutral(text), flags)
    for name in given or {}:
        if name in written:
            raise RequestError(f"--{name} is given twice; use it once.")
    values = {name: flags[name].take(raw) for name, raw in {**written, **(given or {})}.items()}
    return build_request(unquote(prompt), values, defaults=defaults, limits=limits, models=models)


def build_request(
    prompt: str, values: Mapping[str, Value], *, defaults: Defaults, limits: Limits, models: Models
) -> Request:
    """The Request for a prompt and the flags' values (by flag name), the user's defaults filling the rest."""
    flags = flag_table(limits)
    check_length("prompt", prompt, limits.max_prompt_length)
    check_length("negative prompt", str(values.get("no", "")), limits.max_prompt_length)
    style = pick_style(cast(str | None, values.get("style")), models)
    asked = cast(str | None, values.get("model"))
    if style is not None and asked is None and style.model in models:
        asked = style.model  # a style's model that isn't in this registry leaves the user's
    model = pick_model(asked, defaults, models)
    if style is not None and style.name not in models.styles and models[model].kind != TRANSFER_KIND:
        raise RequestError(f"--style {style.name} is a style of the style-transfer model; leave out --model.")
    fields: dict[str, Any] = {flags[name].field: value for name, value in values.items()}
    strength = cast(float | None, values.get("strength"))
    if style is not None:
        prompt = f"{lora_tags(style.loras)} {style.apply(prompt)}".strip()  # the prompt's own tags win
        negative = ", ".join(part for part in (style.negative_prompt, fields.get("negative_prompt", "")) if part)
        fields.update(negative_prompt=negative, style=style.name)
        strength = strength if strength is not None else style.strength
    prompt, loras = pick_loras(prompt, models)
    fields.update(
        prompt=prompt,
        loras=loras,
        model=model,
        strength=pick_strength(strength, defaults, models[model].strength),
        num_images_per_prompt=pick_count(cast(int | None, values.get("n")), defaults, limits),
        compare=pick_compare(cast(tuple[str, ...] | None, values.get("compare")), model, models),
    )
    check_length("background", fields.get("background") or "", MAX_BACKGROUND)
    for text in (prompt, fields.get("negative_prompt", ""), fields.get("background") or ""):
        if reason := check_prompt(text):
            raise RequestError(reason)
    return Request(**fields)


def pick_style(raw: str | None, models: Models) -> Style | None:
    """The preset ``--style`` names: a chat's or a global one, else a built-in style of the
    style-transfer model (as a preset that picks that model and names the style). Raises RequestError."""
    if raw is None:
        return None
    name = raw.strip().lower()
    if name in models.styles:
        return models.styles[name]
    key = transfer_style(name)
    transfer = next((entry.name for entry in models if entry.kind == TRANSFER_KIND), None)
    if key is not None and transfer is not None:
        return Style(name=key, prompt=f"{key} {PLACE}", model=transfer)
    close = difflib.get_close_matches(name, list(models.styles), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise RequestError(f"I don't know the style {raw.strip()[:40]!r}.{hint} Try /styles to see them.")


def pick_loras(prompt: str, models: Models) -> tuple[str, tuple[tuple[str, float], ...]]:
    """The prompt without its <lora:…> tags, and the LoRAs they name (known ones only) at their weights."""
    try:
        text, tags = split_loras(prompt, models.loras)
    except LoraError as error:
        raise RequestError(str(error)) from None
    loras = []
    for name, raw in tags:
        weight = to_float(f"the weight of LoRA {name}", raw)
        if not MIN_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:
            raise RequestError(
                f"the weight of LoRA {name} must be between {number(MIN_LORA_WEIGHT)} and {number(MAX_LORA_WEIGHT)}, "
                f"got {raw}"
            )
        loras.append((name, weight))
    return text, tuple(loras)


def split_flags(text: str, flags: Flags) -> tuple[str, dict[str, str]]:
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
        flag = flags[canonical(match["name"], flags)]
        if flag.name in values:
            raise RequestError(f"--{flag.name} is given twice; use it once.")
        values[flag.name], index = take_value(text, tokens, index, flag, match["value"])
    return " ".join(prompt_parts).strip(), values


def next_flag(tokens: list[Token], index: int) -> int:
    """The index of the first flag token after ``index`` (or the end)."""
    index += 1
    while index < len(tokens) and tokens[index].flag is None:
        index += 1
    return index


def canonical(written: str, flags: Flags) -> str:
    """The canonical flag name for what the user typed; unknown flags suggest the closest one."""
    name = written.lower().replace("_", "-")
    name = flags.aliases.get(name, name)
    if name in flags:
        return name
    known = list(flags) + [alias for alias in flags.aliases if len(alias) > 1]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        raise RequestError(f"I don't know the option --{written}; did you mean --{close[0]}?")
    raise RequestError(f"I don't know the option --{written}; send /help to see the options.")


def take_value(text: str, tokens: list[Token], index: int, flag: Flag, inline: str | None) -> tuple[str, int]:
    """A flag's raw value and the index after it: ``--flag value``, ``--flag=value`` or bare."""
    if flag.kind == "switch":
        return (inline if inline is not None else "yes"), index + 1
    start = index + 1
    end = value_end(tokens, start, flag, inline)
    parts = [inline] if inline is not None else []
    if end > start:
        parts.append(text[tokens[start].start : tokens[end - 1].end])
    value = unquote(" ".join(part for part in parts if part).strip())
    if not value:
        raise RequestError(f"--{flag.name} needs a value, e.g. --{flag.name} {flag.example}")
    return value, end


def value_end(tokens: list[Token], start: int, flag: Flag, inline: str | None) -> int:
    """The index after the tokens that belong to a flag's value.

    ``--no`` runs until the next flag; ``--compare a, b`` goes on after a trailing comma; any
    other flag takes the next token, or none when its value came after ``=``.
    """
    if flag.to_next_flag:
        return next_flag(tokens, start - 1)
    listing = flag.kind == "models"
    end = start
    more = inline is None or (listing and inline.endswith(","))
    while more and end < len(tokens) and tokens[end].flag is None:
        end += 1
        more = listing and tokens[end - 1].text.endswith(",")
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


def pick_strength(value: float | None, defaults: Defaults, model_strength: float) -> float:
    if value is not None:
        return value
    return defaults.strength if defaults.strength is not None else model_strength


def pick_count(value: int | None, defaults: Defaults, limits: Limits) -> int:
    if value is not None:
        return value
    return max(1, min(defaults.num_images_per_prompt, limits.max_num_images))


def pick_compare(names: tuple[str, ...] | None, model: str, models: Models) -> tuple[str, ...]:
    """1 to 3 other registry models, duplicates (and the main model) dropped; () when not asked for."""
    if names is None:
        return ()
    chosen: list[str] = []
    for written in names:
        name = require_model(written, models)
        if name != model and name not in chosen:
            chosen.append(name)
    if not chosen:
        raise RequestError(f"--compare needs at least one model other than {model}.")
    if len(chosen) > MAX_COMPARE:
        raise RequestError(f"--compare takes up to {MAX_COMPARE} other models, got {len(chosen)}.")
    return tuple(chosen)


def format_request(request: Request) -> str:
    """The request as chat text that ``parse_request`` reads back to the same Request."""
    prompt = with_lora_tags(request.prompt, request.loras)
    parts = [quote_prompt(prompt)] if prompt else []
    return " ".join(parts + [text for _, text in written_flags(request)])


def written_flags(request: Request) -> list[tuple[Flag, str]]:
    """Every flag the request sets, as written (``--name value``): each field that differs from the
    Request's default, in the table's order; a flag whose value runs to the next flag comes last."""
    flags = flag_table(Limits())  # writing needs the names and kinds only, not the bounds
    written = []
    for flag in sorted(flags.values(), key=lambda flag: flag.to_next_flag):
        if flag.applied:  # its effect is in the other fields already
            continue
        value = getattr(request, flag.field)
        if value != _UNSET.get(flag.field, _ALWAYS):
            text = flag.write(quote_prompt(value) if flag.kind == "text" else value)
            if text:
                written.append((flag, text))
    return written


_ALWAYS = object()  # a field without a default (model, strength) is always written
_UNSET = {f.name: f.default for f in dataclasses.fields(Request) if f.default is not dataclasses.MISSING}


def quote_prompt(text: str) -> str:
    """Prompt text as it reads back to itself: wrapped in quotes when it is itself wholly quoted,
    or when words in it look like flags (``--n 4`` inside a prompt stays prompt); a flag-like word
    that no pair of quotes can hold is cut off from its dashes."""
    text = neutral(text)
    flags_inside = any(token.flag for token in _tokens(text))
    if unquote(text) == text and not flags_inside:
        return text
    for left, right in (('"', '"'), ("“", "”")):
        quoted = f"{left}{text}{right}"
        if unquote(quoted) == text and len(_tokens(quoted)) == 1:
            return quoted
    return " ".join(token.text.lstrip("-—–") if token.flag else token.text for token in _tokens(text))


def _tokens(text: str) -> list[Token]:
    return [Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def request_from_parameters(
    params: dict[str, Any],
    *,
    defaults: Defaults,
    models: Models,
    limits: Limits | None = None,
) -> Request:
    """A Request reusing the settings ``images.parse_parameters`` found, kept within the flags' bounds."""
    limits = limits or Limits()
    flags = flag_table(limits)
    model = resolve_model(str(params.get("model", "")), models) or pick_model(None, defaults, models)
    strength = params.get("strength")
    if strength is None:
        strength = pick_strength(None, defaults, models[model].strength)
    seed = params.get("seed")
    strength = strength if _finite(strength) else models[model].strength
    prompt, loras = pick_loras(str(params.get("prompt", ""))[: limits.max_prompt_length], models)
    return Request(
        prompt=prompt,
        loras=loras,
        model=model,
        strength=flags["strength"].clamp(strength),
        negative_prompt=str(params.get("negative_prompt", ""))[: limits.max_prompt_length],
        seed=seed if isinstance(seed, int) and 0 <= seed <= MAX_SEED else None,
        num_images_per_prompt=pick_count(None, defaults, limits),
        size=size_from(params, flags["size"], limits.max_size),
        num_inference_steps=clamped(params.get("num_inference_steps"), flags["steps"]),
        guidance_scale=clamped(params.get("guidance_scale"), flags["cfg"]),
        image_guidance_scale=clamped(params.get("image_guidance_scale"), flags["image-cfg"]),
    )


def size_from(params: dict[str, Any], flag: Flag, max_size: int) -> int | None:
    """The longest side of the original's ``Size``, within the flag's bounds and rendered, not upscaled:
    never above ``max_size`` (a big original's size is no request for an upscale)."""
    if "width" not in params or "height" not in params:
        return None
    return int(min(flag.clamp(max(params["width"], params["height"])), max_size))


def clamped(value: Any, flag: Flag) -> Any:
    """``value`` within the flag's bounds; None (the model's default) for a missing value, a NaN or an infinity."""
    return type(value)(flag.clamp(value)) if _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
