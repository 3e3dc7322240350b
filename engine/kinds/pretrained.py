"""A whole diffusers pipeline from a local folder or a cached hub id: the check and the load that the
image-to-video and instruction-edit kinds share, which the img2img kind uses for its folders and hub
ids too (it also takes single-file checkpoints), and the seeded generators every diffusers kind uses.

Where the weights come from, their dtype and offline loading are ``engine.kinds.sources``'s; this
adds ``cpu_offload = true`` (keep only the running component on the GPU: big models on smaller GPUs).
Nothing is downloaded when a job runs. docs/models.md is the operator's guide to the options.

A pipeline's own safety checker (SD 1.5 and instruct-pix2pix name one in ``model_index.json``) is not
loaded unless the entry says ``safety_checker = true``: it would black out whatever it flags, whatever
a server's setting says, and the engine's content classifier (``[defaults] safety``) already judges
every output the way each server chose (block, spoiler or allow).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.models import ModelEntry
from engine.kinds import sources

if TYPE_CHECKING:
    import torch

ENGINE_EXTRA = "needs the engine extra: pip install 'remixbot[engine]'"


def extra_problem() -> str | None:
    """Why the diffusers kinds cannot run here when the engine extra is not installed, else None."""
    if any(importlib.util.find_spec(name) is None for name in ("torch", "diffusers", "transformers")):
        return ENGINE_EXTRA
    return None


def check(entry: ModelEntry, hint: str = "") -> str | None:
    """None when the entry's pipeline can be loaded here, else a user-safe reason (``hint`` is added to a
    "needs weights" one: what the weights are and what they need). Never touches the network."""
    problem = extra_problem()
    if problem:
        return problem
    text = entry.source.strip()
    if not text:
        return f"needs weights: no source is set for {entry.name} in models.toml"
    source = sources.locate(text)
    if source.kind == "missing":
        return f"needs weights: {source.where} not found{hint}"
    if source.kind in ("file", "url"):
        return f"misconfigured: {entry.name} needs a diffusers folder or hub id, not a single checkpoint file"
    if source.kind == "folder" and not (source.path / "model_index.json").is_file():
        return f"needs weights: {source.where} has no model_index.json (not a diffusers pipeline folder)"
    revision = entry.options.get("revision")
    if source.kind == "hub" and sources.cached(source.where, "model_index.json", entry, revision) is None:
        return f"needs weights: download {source.where} first (hf download {source.where}){hint}"
    return sources.dtype_problem(entry)


def from_pretrained(entry: ModelEntry, device: str, cls: Any, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` of the entry's folder or hub id, in its dtype, not yet on a device."""
    source = sources.locate(entry.source.strip())
    if source.kind not in ("folder", "hub"):
        raise sources.MissingWeights(f"needs weights: {source.where} not found")
    if entry.options.get("safety_checker") is not True and "safety_checker" in model_index(entry, source):
        kwargs = {"safety_checker": None, "requires_safety_checker": False, **kwargs}
    return cls.from_pretrained(source.where, **sources.pretrained_kwargs(entry, source, device), **kwargs)


def model_index(entry: ModelEntry, source: sources.Source) -> dict[str, Any]:
    """A folder's or cached hub id's ``model_index.json``; {} when it cannot be read."""
    if source.kind == "folder":
        path: str | Path | None = source.path / "model_index.json"
    else:
        path = sources.cached(source.where, "model_index.json", entry, entry.options.get("revision"))
    try:
        index: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return index


def load(entry: ModelEntry, device: str, cls: Any) -> Any:
    """``cls.from_pretrained`` of the entry's source on ``device`` (or offloaded), progress bars off."""
    pipe = from_pretrained(entry, device, cls)
    if entry.options.get("cpu_offload") and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generators(device: str, seeds: tuple[int, ...] | list[int]) -> list[torch.Generator]:
    """One seeded torch generator per output: the same seed gives the same result."""
    import torch

    where = device if device.startswith("cuda") else "cpu"
    return [torch.Generator(device=where).manual_seed(int(seed)) for seed in seeds]
