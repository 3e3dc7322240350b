"""Styles: named presets a request names with ``--style NAME``.

A style is a prompt template holding ``{prompt}`` (what the user wrote goes there), a negative
prompt, optional LoRAs, a model and a strength. The global ones are in ``config/styles.toml`` (read
with the model registry, beside ``models.toml``); admins of a server or group add their own
(``/server style add``), kept in the history's ``styles`` table. A chat's own style of the same name
as a global one wins in that chat.

A style is applied once, in the core, when the request is built (``bot.requests.build_request``):
the request carries the result (its prompt, negative prompt, LoRAs, model, strength) and the
style's name, so a repeat works even after the style is gone.

``--style`` also names the built-in styles of the neural style-transfer model (``TRANSFER_STYLES``:
``--style starry`` is ``--model style`` with the starry style) when no preset has that name.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.loras import MAX_WEIGHT, MIN_WEIGHT

PLACE = "{prompt}"
MAX_NAME = 32
MAX_TEMPLATE = 500  # characters of a template or a style's negative prompt
MAX_CHAT_STYLES = 50  # styles one server or group may add
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

# The 26 built-in styles of the style-transfer model (engine/kinds/style.py's STYLES; a test keeps
# the two lists equal) and the other names that kind reads for them.
TRANSFER_STYLES = (
    "pastel",
    "bold",
    "muted",
    "frenzy",
    "poster",
    "autumn",
    "dots",
    "primary",
    "chalk",
    "mosaic",
    "terracotta",
    "etching",
    "lavender",
    "acid",
    "frost",
    "stained-glass",
    "swirl",
    "weave",
    "woodcut",
    "starry",
    "ember",
    "paper-cut",
    "ink",
    "moody",
    "engraving",
    "mottled",
)
TRANSFER_KIND = "style-transfer"


class StyleError(ValueError):
    """A style that can't be defined or used; ``str(error)`` is a friendly message for the chat."""


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = PLACE  # the template: ``{prompt}`` is replaced by what the user wrote
    negative_prompt: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    model: str = ""  # "" keeps the user's model
    strength: float | None = None  # None keeps the user's (or the model's) strength
    description: str = ""
    scope: str = ""  # "" for a global style, else the chat's (bot.policy.scope)

    def apply(self, prompt: str) -> str:
        """The template with the user's prompt in place (a blank prompt leaves no stray comma)."""
        filled = self.prompt.replace(PLACE, prompt.strip())
        return re.sub(r"\s+,", ",", re.sub(r"^[\s,]+|[\s,]+$", "", filled)).strip()

    def summary(self) -> str:
        """One line for /styles: the template, then what else the style sets."""
        parts = [self.description or self.prompt]
        if self.model:
            parts.append(f"model {self.model}")
        if self.strength is not None:
            parts.append(f"strength {self.strength:g}")
        if self.loras:
            parts.append("LoRA " + ", ".join(f"{name} {weight:g}" for name, weight in self.loras))
        return " · ".join(parts)

    def to_data(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "loras": [[name, weight] for name, weight in self.loras],
            "model": self.model,
            "strength": self.strength,
            "description": self.description,
        }


@dataclass(frozen=True)
class StyleList:
    """What /styles shows where it is asked."""

    shared: tuple[Style, ...]  # the global ones (those a chat style of the same name hides left out)
    own: tuple[Style, ...]  # the chat's own
    transfer: bool = False  # the registry has a style-transfer model: its built-in styles are names too


def check_name(name: str) -> str:
    """A style's name, lower case: letters, digits, ``-`` and ``_``. Raises StyleError."""
    lowered = name.strip().lower()
    if not _NAME.match(lowered):
        raise StyleError(f"A style's name is 1 to {MAX_NAME} letters, digits, - or _ (got {name.strip()[:40]!r}).")
    return lowered


def make_style(name: str, data: dict[str, Any], scope: str = "") -> Style:
    """A checked Style from plain data (a styles.toml table, a stored row). Raises StyleError."""
    template = str(data.get("prompt", PLACE))
    if PLACE not in template:
        raise StyleError(f"A style's prompt needs {PLACE} where the user's prompt goes.")
    negative = str(data.get("negative_prompt", ""))
    if len(template) > MAX_TEMPLATE or len(negative) > MAX_TEMPLATE:
        raise StyleError(f"A style's prompt and negative prompt are up to {MAX_TEMPLATE} characters each.")
    strength = data.get("strength")
    if strength is not None and (isinstance(strength, bool) or not 0 <= float(strength) <= 1):
        raise StyleError("A style's strength is between 0 and 1.")
    loras = []
    raw_loras = data.get("loras", [])
    items = raw_loras.items() if isinstance(raw_loras, dict) else raw_loras
    for lora_name, weight in items:
        if not MIN_WEIGHT <= float(weight) <= MAX_WEIGHT:
            raise StyleError(f"A LoRA's weight is between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}.")
        loras.append((str(lora_name), float(weight)))
    return Style(
        name=check_name(name),
        prompt=template,
        negative_prompt=negative,
        loras=tuple(loras),
        model=str(data.get("model", "")),
        strength=None if strength is None else float(strength),
        description=str(data.get("description", "")),
        scope=scope,
    )


def parse_styles(text: str) -> dict[str, Style]:
    """``styles.toml`` text: one ``[styles.NAME]`` table per style. Raises ValueError."""
    found: dict[str, Style] = {}
    for name, raw in tomllib.loads(text).get("styles", {}).items():
        try:
            style = make_style(name, raw)
        except (StyleError, TypeError, ValueError) as error:
            raise ValueError(f"styles.toml: style {name!r}: {error}") from None
        found[style.name] = style
    return found


def load_styles(path: Path) -> dict[str, Style]:
    """The global styles in ``path``; none when there is no such file."""
    if not path.is_file():
        return {}
    return parse_styles(path.read_text(encoding="utf-8"))


def transfer_style(name: str) -> str | None:
    """The style-transfer model's built-in style ``name`` names ("stained glass" → "stained-glass"), or None."""
    key = "-".join(name.lower().split())
    return key if key in TRANSFER_STYLES else None
