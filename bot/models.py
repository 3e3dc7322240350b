"""The model registry as the core sees it: ``config/models.toml`` read into typed entries.

Reading the file needs no torch; the engine decides whether an entry can really run
(``engine.registry.availability``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.jobs import Action

# The model each button uses unless models.toml says otherwise.
DEFAULT_FOR_ACTION = {
    Action.remix: "classic",
    Action.upscale: "classic",
    Action.fixface: "classic",
    Action.animate: "classic",
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "classic", "diffusers-img2img", ... (engine/kinds)
    description: str = ""
    source: str = ""  # hub id, local folder, or single-file .safetensors/.ckpt checkpoint
    group: str = ""  # the queue that runs it; defaults to "classic" for classic, else "gpu"
    strength: float = 0.6
    num_inference_steps: int = 30
    guidance_scale: float = 7.0
    size: int = 768  # default longest side of the output
    multiple: int = 8  # output sides are multiples of this
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific settings

    @property
    def queue_group(self) -> str:
        return self.group or ("classic" if self.kind == "classic" else "gpu")


@dataclass(frozen=True)
class Models:
    entries: dict[str, ModelEntry]
    defaults: dict[Action, str]
    # [safety.NAME] entries: content classifiers (engine/kinds/nudenet.py, safety_checker.py), never a
    # model users pick; ``safety`` names the one in use ([defaults] safety), "" for none
    classifiers: dict[str, ModelEntry] = field(default_factory=dict)
    safety: str = ""

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> ModelEntry:
        return self.entries[name]

    def __iter__(self):
        return iter(self.entries.values())

    def names(self) -> list[str]:
        return list(self.entries)

    @property
    def classifier(self) -> ModelEntry | None:
        """The content classifier in use, or None."""
        return self.classifiers.get(self.safety)

    def for_action(self, action: Action) -> ModelEntry:
        """The model a button uses (upscale, fixface, animate) or the default remix model."""
        name = self.defaults.get(action) or self.defaults[Action.remix]
        return self.entries[name]


_ENTRY_FIELDS = {
    "kind",
    "description",
    "source",
    "group",
    "strength",
    "num_inference_steps",
    "guidance_scale",
    "size",
    "multiple",
}


def parse_models(text: str, base: Path | None = None) -> Models:
    """Parse models.toml text. Relative ``source`` paths resolve against ``base``."""
    data = tomllib.loads(text)
    entries: dict[str, ModelEntry] = {}
    safety_tables = data.get("safety", {})  # [safety.NAME]: read like models, then kept apart
    if set(safety_tables) & set(data.get("models", {})):
        raise ValueError("models.toml: a [safety] entry has the name of a model")
    for name, raw in {**data.get("models", {}), **safety_tables}.items():
        if "kind" not in raw:
            raise ValueError(f"models.toml: model {name!r} has no kind")
        known = {k: v for k, v in raw.items() if k in _ENTRY_FIELDS}
        options = {k: v for k, v in raw.items() if k not in _ENTRY_FIELDS}
        source = known.get("source", "")
        if base is not None and source.startswith(("./", "../")):
            known["source"] = str((base / source).resolve())
        entries[name] = ModelEntry(name=name, options=options, **known)
    classifiers = {name: entries.pop(name) for name in safety_tables}
    if "classic" not in entries:
        entries["classic"] = ModelEntry(
            name="classic",
            kind="classic",
            description="No weights, instant: colour grades and painterly looks picked from your prompt.",
        )
    defaults = dict(DEFAULT_FOR_ACTION)
    safety = str(data.get("defaults", {}).get("safety", ""))
    if safety and safety not in classifiers:
        raise ValueError(f"models.toml: default safety = {safety!r} is not a [safety] entry")
    for key, value in data.get("defaults", {}).items():
        if key == "safety":
            continue
        action = Action(key if key != "model" else "remix")
        if value not in entries:
            raise ValueError(f"models.toml: default {key} = {value!r} is not a model")
        defaults[action] = value
    return Models(entries=entries, defaults=defaults, classifiers=classifiers, safety=safety)


def load_models(path: Path) -> Models:
    return parse_models(path.read_text(encoding="utf-8"), base=path.parent)
