"""The content classifier of the registry's ``[defaults] safety`` entry, run off the event loop.

The engine asks it about every output before the output leaves the engine (every frame of a clip, up
to ``MAX_FRAMES`` evenly spaced) and writes the answer on the output (``Output.verdict``); the core
decides what a verdict means for the chat (``bot.policy``). The service asks it about a source before
queueing (``classify``: the ``bot.moderation.Classifier`` port), on a thread of its own.

The classifier loads on first use and stays loaded (NudeNet: 12 MB). One that cannot run here
(``pip install 'remixbot[nsfw]'`` missing) is reported once in the log and checks nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, Protocol, cast

import numpy as np
from PIL import Image, ImageSequence

from bot.jobs import Verdict
from bot.models import ModelEntry, Models
from engine import registry
from engine.work import Clip

log = logging.getLogger(__name__)

MAX_FRAMES = 64  # frames of a clip that are checked: all of them up to this, else this many evenly spaced


class Scorer(Protocol):
    """What a safety kind's ``load`` returns."""

    label: str

    def classify(self, pictures: Sequence[Image.Image]) -> list[Verdict]: ...


class Safety:
    """One classifier entry, loaded on first use. Thread-safe."""

    def __init__(self, entry: ModelEntry, device: str = "cpu", scorer: Scorer | None = None):
        """``scorer``: one already loaded (else the entry's kind loads it on first use)."""
        self.entry = entry
        self.device = device
        self._scorer: Scorer | None = scorer
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def of(cls, models: Models, device: str = "cpu") -> Safety | None:
        """The registry's classifier, or None when models.toml names none or it cannot run here."""
        entry = models.classifier
        if entry is None:
            return None
        reason = registry.check(entry)
        if reason:
            log.warning("content classifier %s is off: %s", entry.name, reason)
            return None
        return cls(entry, device)

    @property
    def label(self) -> str:
        return self._scorer.label if self._scorer else self.entry.name

    def scorer(self) -> Scorer:
        with self._lock:
            scorer = self._scorer
            if scorer is None:
                log.info("loading content classifier %s (%s)", self.entry.name, self.entry.kind)
                # a safety kind's load returns a scorer, though Kind.load is typed for models
                scorer = cast(Scorer, registry.kind_of(self.entry).load(self.entry, self.device))
                self._scorer = scorer
            return scorer

    def pictures(self, pictures: Sequence[Image.Image]) -> list[Verdict]:
        """A verdict per picture (call from a worker thread)."""
        return self.scorer().classify(pictures)

    def item(self, item: Image.Image | Clip) -> Verdict:
        """A verdict on an output: a picture, or a clip's worst frame (call from a worker thread)."""
        if isinstance(item, Clip):
            return worst(self.pictures(frames(item)))
        return self.pictures([item])[0]

    async def classify(self, pictures: Sequence[bytes]) -> list[Verdict]:
        """The core's port: verdicts on encoded pictures, on this classifier's own thread."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "safety")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._classify_encoded, list(pictures))

    def _classify_encoded(self, pictures: list[bytes]) -> list[Verdict]:
        return self.pictures([_open(data) for data in pictures])


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The one verdict that stands for several (a clip's frames): a flagged one first, then the top score."""
    return max(verdicts, key=lambda v: (v.flagged, v.score), default=Verdict(flagged=False))


def frames(clip: Clip) -> list[Image.Image]:
    """Up to MAX_FRAMES frames of a clip (MP4 through imageio-ffmpeg, GIF through Pillow), evenly spaced."""
    if clip.media_type == "image/gif":
        with Image.open(io.BytesIO(clip.data)) as gif:
            every = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
    else:
        every = _video_frames(clip)
    if len(every) <= MAX_FRAMES:
        return every
    picks = np.linspace(0, len(every) - 1, MAX_FRAMES).round().astype(int)
    return [every[i] for i in picks]


def _video_frames(clip: Clip) -> list[Image.Image]:
    import imageio_ffmpeg

    handle, path = tempfile.mkstemp(suffix=".mp4")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(clip.data)
        reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
        meta: dict[str, Any] = next(reader)
        width, height = meta["size"]
        return [Image.frombytes("RGB", (width, height), bytes(raw)) for raw in reader]
    finally:
        os.unlink(path)


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
