"""LoRAs on a diffusers pipeline: loaded once through ``load_lora_weights`` (peft), switched with ``set_adapters``.

A pipeline keeps up to ``MAX_LOADED`` LoRAs resident; a job activates the ones its request names at
their weights (weight 0 is the same as no LoRA) and a job with none disables them all, so switching
costs no load. A LoRA trained for another base model (its cross-attention width or its second text
encoder says which) is refused with a message that names both.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.work import UserFacingError, Work

log = logging.getLogger(__name__)

MAX_LOADED = 8  # LoRAs kept resident per pipeline; the least recently used one goes first
# Cross-attention width → the base model family it belongs to.
_FAMILIES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
_CROSS_ATTENTION_KEY = re.compile(r"attn2[._]to_k.*(lora_down|lora_A|lora\.down)\.weight$")


class LoraRefused(UserFacingError):
    """A LoRA that cannot be used with this model; the message says why."""


@dataclass
class LoadedLoras:
    """The LoRAs resident on one pipeline (by file), in least-recently-used order, and those active."""

    adapters: OrderedDict[Path, str] = field(default_factory=OrderedDict)  # file -> peft adapter name
    active: tuple[tuple[str, float], ...] = ()
    count: int = 0  # adapters ever loaded: fresh adapter names

    def activate(self, pipe: Any, work: Work) -> None:
        """Make the work's LoRAs (and only those) active on ``pipe`` at their weights."""
        wanted = tuple((self._adapter(pipe, _file(work, name), name), weight) for name, weight in work.request.loras)
        if wanted == self.active:
            return
        if wanted:
            pipe.enable_lora()
            pipe.set_adapters([adapter for adapter, _ in wanted], [weight for _, weight in wanted])
        elif self.adapters:
            pipe.disable_lora()
        self.active = wanted

    def _adapter(self, pipe: Any, path: Path, name: str) -> str:
        if path in self.adapters:
            self.adapters.move_to_end(path)
            return self.adapters[path]
        check_base(pipe, path, name)
        self.count += 1
        adapter = f"{re.sub(r'[^A-Za-z0-9_]', '_', name)[:40]}_{self.count}"
        try:
            pipe.load_lora_weights(str(path), adapter_name=adapter)
        except Exception as error:  # a file diffusers can't map onto this model
            log.warning("LoRA %s did not load: %s", path.name, error)
            raise LoraRefused(f"the LoRA {name} does not fit this model") from None
        self.adapters[path] = adapter
        active = {adapter for adapter, _ in self.active}
        while len(self.adapters) > MAX_LOADED:
            oldest = next((p for p, a in self.adapters.items() if a not in active and p != path), None)
            if oldest is None:
                break
            pipe.delete_adapters(self.adapters.pop(oldest))
        return adapter


def _file(work: Work, name: str) -> Path:
    path = work.lora_files.get(name)
    if path is None or not path.is_file():
        raise LoraRefused(f"the LoRA {name} is not on this server")
    return path


def check_base(pipe: Any, path: Path, name: str) -> None:
    """Refuse a LoRA made for another base model than ``pipe``'s, when its header tells."""
    shapes = _header_shapes(path)
    unet = getattr(pipe, "unet", None)
    expected = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    if isinstance(expected, (list, tuple)):
        expected = expected[0]
    widths = {shape[1] for key, shape in shapes.items() if _CROSS_ATTENTION_KEY.search(key) and len(shape) >= 2}
    xl_keys = any(key.startswith(("lora_te2_", "text_encoder_2.")) for key in shapes)
    pipe_xl = getattr(pipe, "text_encoder_2", None) is not None
    made_for = next(iter(widths)) if len(widths) == 1 else None
    if (made_for is not None and expected is not None and made_for != expected) or (xl_keys and not pipe_xl):
        theirs = _FAMILIES.get(made_for or 2048, f"a {made_for}-wide model")
        ours = _FAMILIES.get(expected or 0, f"a {expected}-wide model")
        raise LoraRefused(f"the LoRA {name} is made for {theirs}; this model is {ours}")


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """A safetensors file's tensor shapes, from its header only."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 1 << 27:
                raise ValueError("not a safetensors header")
            header = json.loads(fh.read(size))
    except (OSError, ValueError) as error:
        log.warning("LoRA %s is unreadable: %s", path.name, error)
        raise LoraRefused(f"the LoRA {path.stem} is not a readable .safetensors file") from None
    header.pop("__metadata__", None)
    return {key: tuple(value.get("shape", ())) for key, value in header.items() if isinstance(value, dict)}
