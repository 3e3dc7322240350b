"""What a model kind receives and returns.

Every kind module under ``engine/kinds`` exposes two functions::

    def check(entry: ModelEntry) -> str | None
        # None when the entry can run here; else a user-safe reason ("needs weights: …")
    def load(entry: ModelEntry, device: str) -> Model
        # device is "cpu" or "cuda[:n]"; the loaded model stays resident in the runner's cache

and a ``Model`` has a ``label`` (what ran, shown to users: "classic", "diffusers
StableDiffusionImg2ImgPipeline") and ``run(work, progress) -> list[Image | Clip]`` returning one
item per seed in ``work.seeds``. ``progress(step, total)`` must be called at every step; it raises
``JobCancelled`` when the job was cancelled, which the kind lets propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from bot.jobs import Action, Progress, Request
from bot.models import ModelEntry


class UserFacingError(Exception):
    """A failure whose message is safe (and useful) to show in the chat: "needs weights: …"."""


@dataclass(frozen=True)
class Work:
    action: Action
    request: Request  # resolved: seed set, steps/cfg/strength filled from the model's defaults
    entry: ModelEntry
    image: Image.Image  # RGB source, already fitted to the working size for remix-like actions
    references: tuple[Image.Image, ...]  # RGB
    seeds: tuple[int, ...]  # one output per seed
    device: str
    # What this run wants the user to know ("no face found"): the kind appends, the runner joins them
    # into Result.note. Per run, so it stays right when one model serves several jobs.
    notes: list[str] = field(default_factory=list)
    # Another registry entry by name -> (entry, its resident model), for a kind that drives a second
    # model (face-restore's inpaint_model). The runner passes its own loader; None elsewhere.
    load_model: Callable[[str], tuple[ModelEntry, Model]] | None = None
    # The LoRA folder's files by name (bot.loras.find_loras), for the request's ``loras``.
    lora_files: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Clip:
    """A produced video (or animated image): encoded bytes."""

    data: bytes
    media_type: str  # "video/mp4", "image/gif"
    width: int
    height: int


class Model(Protocol):
    label: str

    def run(self, work: Work, progress: Progress) -> list[Image.Image | Clip]: ...
