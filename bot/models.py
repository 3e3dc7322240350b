"""The model registry as the core sees it: ``config/models.toml`` read into typed entries.

Reading the file needs no torch; the engine decides whether an entry can really run
(``engine.registry.availability``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.jobs import Action
from bot.loras import find_loras
from bot.styles import Style, load_styles

# The model each button uses unless models.toml says otherwise.
DEFAULT_FOR_ACTION = {
    Action.remix: "classic",
    Action.upscale: "classic",
    Action.fixface: "classic",
    Action.animate: "classic",
    Action.outpaint: "classic",
}
CUTOUT = "cutout"  # the entry ✂️ Cut out uses when models.toml has one and [defaults] names no other


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
    # --style presets by name: the global ones (styles.toml beside models.toml), plus a chat's own
    # where the service builds a request for that chat (bot.styles)
    styles: dict[str, Style] = field(default_factory=dict)
    # [defaults] may list several models for an action ("the first of these that can run"): ``settle``
    # picks among them once availability is known; until then the first is the default
    choices: dict[Action, tuple[str, ...]] = field(default_factory=dict)
    # [safety.NAME] entries: content classifiers (engine/kinds/nudenet.py, safety_checker.py), never a
    # model users pick; ``safety`` names the one in use ([defaults] safety), "" for none
    classifiers: dict[str, ModelEntry] = field(default_factory=dict)
    safety: str = ""

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> ModelEntry:
        return self.entries[name]

    def __iter__(self) -> Iterator[ModelEntry]:
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

    def serves(self, action: Action) -> bool:
        """Whether some model is set to do ``action`` (✂️ Cut out needs a cutout entry)."""
        return action is not Action.cutout or action in self.defaults

    def settle(self, availability: dict[str, str | None]) -> Models:
        """The registry with each listed default set to its first choice that can run (availability:
        name → None when it runs), or its last choice when none can."""
        defaults = dict(self.defaults)
        for action, names in self.choices.items():
            runnable = [name for name in names if name in availability and availability[name] is None]
            defaults[action] = runnable[0] if runnable else names[-1]
        return replace(self, defaults=defaults)


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


WEIGHTS_SCHEME = "weights:"  # source = "weights:realesrgan/x.safetensors": under the data dir's weights/


def parse_models(text: str, base: Path | None = None, weights: Path | None = None) -> Models:
    """Parse models.toml text. Relative ``source`` paths resolve against ``base``; ``weights:`` sources and
    options against ``weights`` (the data dir's ``weights/`` folder, where ``remixbot weights`` installs)."""
    data = tomllib.loads(text)
    entries: dict[str, ModelEntry] = {}
    safety_tables = data.get("safety", {})  # [safety.NAME]: read like models, then kept apart
    if set(safety_tables) & set(data.get("models", {})):
        raise ValueError("models.toml: a [safety] entry has the name of a model")
    for name, raw in {**data.get("models", {}), **safety_tables}.items():
        if "kind" not in raw:
            raise ValueError(f"models.toml: model {name!r} has no kind")
        folder = weights or Path("data") / "weights"
        known = {k: v for k, v in raw.items() if k in _ENTRY_FIELDS}
        options = {k: _in_weights(v, folder) for k, v in raw.items() if k not in _ENTRY_FIELDS}
        source = known.get("source", "")
        if base is not None and source.startswith(("./", "../")):
            known["source"] = str((base / source).resolve())
        else:
            known["source"] = _in_weights(source, folder)
        entries[name] = ModelEntry(name=name, options=options, **known)
    classifiers = {name: entries.pop(name) for name in safety_tables}
    if "classic" not in entries:
        entries["classic"] = ModelEntry(
            name="classic",
            kind="classic",
            description="No weights, instant: colour grades and painterly looks picked from your prompt.",
        )
    defaults = dict(DEFAULT_FOR_ACTION)
    if CUTOUT in entries:
        defaults[Action.cutout] = CUTOUT
    choices: dict[Action, tuple[str, ...]] = {}
    safety = str(data.get("defaults", {}).get("safety", ""))
    if safety and safety not in classifiers:
        raise ValueError(f"models.toml: default safety = {safety!r} is not a [safety] entry")
    for key, value in data.get("defaults", {}).items():
        if key == "safety":
            continue
        action = Action(key if key != "model" else "remix")
        names = tuple(value) if isinstance(value, list) else (value,)
        for name in names:
            if name not in entries:
                raise ValueError(f"models.toml: default {key} = {name!r} is not a model")
        if not names:
            raise ValueError(f"models.toml: default {key} lists no model")
        defaults[action] = names[0]
        if len(names) > 1:
            choices[action] = names
    return Models(entries=entries, defaults=defaults, choices=choices, classifiers=classifiers, safety=safety)


def _in_weights(value: Any, folder: Path) -> Any:
    """A ``weights:PATH`` string (a source or a file option) as the path under ``folder``; else as is."""
    if isinstance(value, str) and value.startswith(WEIGHTS_SCHEME):
        return str(folder / value[len(WEIGHTS_SCHEME) :])
    return value


SHIPPED_STYLES = Path(__file__).resolve().parents[1] / "config" / "styles.toml"


def load_models(path: Path, weights: Path | None = None, *, lora_dir: Path | None = None) -> Models:
    """The registry in ``path``, the LoRAs in ``lora_dir`` and the global styles: ``styles.toml`` beside
    ``path``, else the shipped ``config/styles.toml``."""
    models = parse_models(path.read_text(encoding="utf-8"), base=path.parent, weights=weights)
    beside = path.with_name("styles.toml")
    styles = load_styles(beside if beside.is_file() else SHIPPED_STYLES)
    return replace(models, loras=find_loras(lora_dir), styles=styles)
