"""The model registry as the core sees it: ``config/models.toml`` read into typed entries.

Reading the file needs no torch; the engine decides whether an entry can really run
(``engine.registry.availability``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.jobs import Action
from bot.loras import find_loras

# The model each button uses unless models.toml says otherwise.
DEFAULT_FOR_ACTION = {
    Action.remix: "classic",
    Action.upscale: "classic",
    Action.fixface: "classic",
    Action.animate: "classic",
    Action.outpaint: "classic",
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
    loras: dict[str, Path] = field(default_factory=dict)  # the LoRA folder's files by name (bot.loras)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> ModelEntry:
        return self.entries[name]

    def __iter__(self):
        return iter(self.entries.values())

    def names(self) -> list[str]:
        return list(self.entries)

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
    for name, raw in data.get("models", {}).items():
        if "kind" not in raw:
            raise ValueError(f"models.toml: model {name!r} has no kind")
        known = {k: v for k, v in raw.items() if k in _ENTRY_FIELDS}
        options = {k: v for k, v in raw.items() if k not in _ENTRY_FIELDS}
        source = known.get("source", "")
        if base is not None and source.startswith(("./", "../")):
            known["source"] = str((base / source).resolve())
        entries[name] = ModelEntry(name=name, options=options, **known)
    if "classic" not in entries:
        entries["classic"] = ModelEntry(
            name="classic",
            kind="classic",
            description="No weights, instant: colour grades and painterly looks picked from your prompt.",
        )
    defaults = dict(DEFAULT_FOR_ACTION)
    for key, value in data.get("defaults", {}).items():
        action = Action(key if key != "model" else "remix")
        if value not in entries:
            raise ValueError(f"models.toml: default {key} = {value!r} is not a model")
        defaults[action] = value
    return Models(entries=entries, defaults=defaults)


def load_models(path: Path, lora_dir: Path | None = None) -> Models:
    models = parse_models(path.read_text(encoding="utf-8"), base=path.parent)
    return replace(models, loras=find_loras(lora_dir))
