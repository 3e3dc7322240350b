"""A whole diffusers pipeline from a local folder or a cached hub id: the check and the load that the
image-to-video and instruction-edit kinds share (the img2img kind also takes single-file checkpoints).

Reuses img2img's source rules: a folder saved with ``save_pretrained`` or a hub id already in the
Hugging Face cache; nothing is downloaded when a job runs. Options: ``dtype`` (float16 on CUDA unless
told otherwise, float32 on CPU), ``variant``, ``revision``, ``cache_dir``, ``offline``, and
``cpu_offload = true`` to keep only the running component on the GPU (big models on smaller GPUs).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from bot.models import ModelEntry
from engine.kinds import img2img
from engine.kinds.img2img import ENGINE_EXTRA, MissingWeights


def check(entry: ModelEntry, hint: str = "") -> str | None:
    """None when the entry's pipeline can be loaded here, else a user-safe reason (``hint`` is added to a
    "needs weights" one: what the weights are and what they need). Never touches the network."""
    if any(importlib.util.find_spec(name) is None for name in ("torch", "diffusers", "transformers")):
        return ENGINE_EXTRA
    source = entry.source.strip()
    if not source:
        return f"needs weights: no source is set for {entry.name} in models.toml"
    kind, where = img2img._classify(source)
    if kind == "missing":
        return f"needs weights: {where} not found{hint}"
    if kind in ("file", "url"):
        return f"misconfigured: {entry.name} needs a diffusers folder or hub id, not a single checkpoint file"
    if kind == "folder" and not (where / "model_index.json").is_file():
        return f"needs weights: {where} has no model_index.json (not a diffusers pipeline folder)"
    revision = entry.options.get("revision")
    if kind == "hub" and img2img._cached(where, "model_index.json", entry, revision) is None:
        return f"needs weights: download {where} first (hf download {where}){hint}"
    return img2img._check_options(entry)


def load(entry: ModelEntry, device: str, cls: type) -> Any:
    """``cls.from_pretrained`` of the entry's source on ``device``, progress bars off."""
    kind, where = img2img._classify(entry.source.strip())
    if kind not in ("folder", "hub"):
        raise MissingWeights(f"needs weights: {where} not found")
    kwargs: dict[str, Any] = {
        img2img._dtype_kwarg(): img2img._dtype(entry, device),
        "local_files_only": img2img._offline(entry),
    }
    if kind == "hub":
        kwargs["cache_dir"] = img2img._hub_cache_dir(entry)
    for option in ("variant", "revision"):
        if entry.options.get(option):
            kwargs[option] = entry.options[option]
    pipe = cls.from_pretrained(str(where), **kwargs)
    if entry.options.get("cpu_offload") and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generators(device: str, seeds: tuple[int, ...]) -> list:
    """One seeded torch generator per output: the same seed gives the same result."""
    import torch

    where = device if device.startswith("cuda") else "cpu"
    return [torch.Generator(device=where).manual_seed(int(seed)) for seed in seeds]
