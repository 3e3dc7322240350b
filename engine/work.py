"""What a model kind is, receives and returns: the contract between the engine and ``engine/kinds``.

Every kind module under ``engine/kinds`` exports ``KIND``, a ``Kind``: its ``check(entry)`` (None
when the entry can run here, else a user-safe reason: "needs weights: …") and ``load(entry,
device)`` (device is "cpu" or "cuda[:n]"; the loaded ``Model`` stays resident in the runner's
cache), and what the engine may know before loading: an ``expected_nbytes`` estimate, whether its
models batch, and a fixed device for kinds that need no torch. The runner uses nothing else.

A ``Model`` has a ``label`` (what ran, shown to users: "classic", "diffusers
StableDiffusionImg2ImgPipeline") and ``run(work, progress)`` returning one image or clip per seed
in ``work.seeds``. ``progress(step, total)`` must be called at every step; it raises
``JobCancelled`` when the job was cancelled, which the kind lets propagate. A ``BatchingModel``
also runs several works that share a ``batch_key`` as one call (``run_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from bot.jobs import Action, Progress, Request
from bot.models import ModelEntry

# preview(step, total, jpeg): a running job's current picture, at most every few seconds (engine.preview).
PreviewSink = Callable[[int, int, bytes], None]


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
    # Where a kind that can show its work in progress sends a preview (step, total, a small JPEG):
    # the runner passes one that reaches the job's Events; None: nobody is watching, render none.
    preview: PreviewSink | None = None


@dataclass(frozen=True)
class Clip:
    """A produced video (or animated image): encoded bytes."""

    data: bytes
    media_type: str  # "video/mp4", "image/gif"
    width: int
    height: int


Outcome = Sequence[Image.Image | Clip] | Exception  # one work's outputs in a batch, or its own error


class Model(Protocol):
    label: str  # what ran, shown to users

    def run(self, work: Work, progress: Progress) -> Sequence[Image.Image | Clip]:
        """One image or clip per seed in ``work.seeds``, calling ``progress`` at every step."""
        ...


@runtime_checkable
class BatchingModel(Model, Protocol):
    """A model that can run several works as one call (its kind says ``batches=True``)."""

    def batch_key(self, work: Work) -> Hashable:
        """Works with equal keys (same model) can run as one batch."""
        ...

    def run_batch(self, works: Sequence[Work], progress: Progress) -> Sequence[Outcome]:
        """Works sharing one ``batch_key`` as one call: per work, its outputs or the error that is its alone."""
        ...


def _size_unknown(entry: ModelEntry, device: str) -> int | None:
    return None


@dataclass(frozen=True)
class Kind:
    """A model kind, as its module under ``engine/kinds`` exports it (``KIND``)."""

    # None when the entry can run here, else a user-safe reason; cheap: never imports torch
    check: Callable[[ModelEntry], str | None]
    # the entry's model on the device ("cpu", "cuda[:n]"), ready to run
    load: Callable[[ModelEntry, str], Model]
    # the bytes ``load`` will take on the device, told without loading (None: unknown until loaded)
    expected_nbytes: Callable[[ModelEntry, str], int | None] = _size_unknown
    batches: bool = False  # its models are ``BatchingModel``s: the runner may run several jobs as one call
    # the device its models always use; "cpu" for kinds without torch, so the engine never imports
    # torch to pick one for them. None: the engine's device.
    device: str | None = None
