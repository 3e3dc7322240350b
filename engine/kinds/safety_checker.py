"""The ``safety-checker`` safety kind: diffusers' ``StableDiffusionSafetyChecker`` (CLIP concept embeddings).

For operators who bring its weights (``hf download CompVis/stable-diffusion-safety-checker``, or the
``safety_checker`` + ``feature_extractor`` folders of a Stable Diffusion pipeline saved with
``save_pretrained``). ``source`` is that folder or hub id; the checker's files are looked for at its
root, else under ``safety_checker/`` (and the image processor's under ``feature_extractor/``).
Nothing is downloaded: a hub id must already be in the Hugging Face cache. Needs the engine extra
(torch); in Redis mode it runs on the workers, never in the bot process.

The verdict is diffusers' own (``has_nsfw_concepts``: some concept embedding nearer than its
threshold); its score is 1.0 when flagged, else 0.0 (the checker has no calibrated score).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from bot.jobs import Verdict
from bot.models import ModelEntry
from engine.kinds import sources
from engine.kinds.pretrained import ENGINE_EXTRA
from engine.work import Kind


def _where(entry: ModelEntry, name: str, subfolder: str) -> tuple[str, str] | None:
    """(repo or folder, subfolder) holding ``name`` for the checker's files, or None when not here.
    A hub id is looked up in the entry's cache (``engine.kinds.sources``), never on the network."""
    source = sources.locate(entry.source.strip())
    for sub in ("", subfolder):
        if source.kind == "folder" and (source.path / sub / name).is_file():
            return source.where, sub
        if source.kind == "hub" and sources.cached(source.where, f"{sub}/{name}" if sub else name, entry):
            return source.where, sub
    return None


def check(entry: ModelEntry) -> str | None:
    if any(importlib.util.find_spec(name) is None for name in ("torch", "diffusers", "transformers")):
        return ENGINE_EXTRA
    source = entry.source.strip()
    if not source:
        return f"needs weights: no source is set for {entry.name} in models.toml"
    if _where(entry, "config.json", "safety_checker") is None:
        return f"needs weights: {source} has no safety checker (hf download {source})"
    if _where(entry, "preprocessor_config.json", "feature_extractor") is None:
        return f"needs weights: {source} has no feature extractor (preprocessor_config.json)"
    return None


class SafetyChecker:
    label = "diffusers StableDiffusionSafetyChecker"

    def __init__(self, checker: Any, processor: Any, device: str):
        self._checker = checker
        self._processor = processor
        self._device = device
        self._lock = threading.Lock()

    def classify(self, pictures: Sequence[Image.Image]) -> list[Verdict]:
        import torch

        if not pictures:
            return []
        rgb = [picture.convert("RGB") for picture in pictures]
        inputs = self._processor(images=rgb, return_tensors="pt").pixel_values.to(self._device)
        blanks = [np.zeros((1, 1, 3), np.float32) for _ in rgb]  # the checker blacks these out, not ours
        with self._lock, torch.inference_mode():
            _, flags = self._checker(clip_input=inputs.to(self._checker.dtype), images=blanks)
        return [Verdict(flagged=bool(flag), score=1.0 if flag else 0.0, label="nsfw concept") for flag in flags]


def load(entry: ModelEntry, device: str) -> SafetyChecker:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    found = _where(entry, "config.json", "safety_checker")
    processor_at = _where(entry, "preprocessor_config.json", "feature_extractor")
    if found is None or processor_at is None:
        raise FileNotFoundError(check(entry) or "needs weights")
    hub = sources.locate(entry.source.strip()).kind == "hub"
    where: dict[str, Any] = {"local_files_only": True, "cache_dir": sources.hub_cache_dir(entry) if hub else None}
    checker = StableDiffusionSafetyChecker.from_pretrained(found[0], subfolder=found[1], **where)
    checker = checker.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to's self oddly
    checker.eval()
    processor = CLIPImageProcessor.from_pretrained(processor_at[0], subfolder=processor_at[1], **where)
    return SafetyChecker(checker, processor, device)


# A scorer, not a Model: engine.safety calls its ``classify`` (the Kind's load is typed for models).
KIND = Kind(check=check, load=load)  # type: ignore[arg-type]
