"""IP-Adapter for the ``diffusers-img2img`` kind: reference images steer a remix (SD 1.x / SDXL).

The entry's ``ip_adapter*`` and ``image_encoder`` options (docs/models.md) name the files, found like
any source (``engine.kinds.sources``). All of a job's references (up to 3) go to the one adapter as
one image list; a job without references runs the adapter at scale 0.

img2img calls four functions: ``check`` (from its check), ``attach`` (when it loads the pipeline),
``batch_key`` (part of its batch key) and ``call_kwargs`` (the pipeline arguments of one run).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from bot.models import ModelEntry
from engine.kinds import sources
from engine.work import Work

DEFAULT_SCALE = 0.6


def configured(entry: ModelEntry) -> bool:
    return bool(entry.options.get("ip_adapter"))


def _files(entry: ModelEntry) -> tuple[str, str | None, str, str]:
    """(repo or folder, subfolder, weight file, the image encoder's folder) as diffusers will look them up."""
    options = entry.options
    repo = str(options["ip_adapter"]).strip()
    subfolder = str(options.get("ip_adapter_subfolder", "")).strip("/")
    weight = str(options.get("ip_adapter_weight_name", "")).strip()
    encoder = str(options.get("image_encoder", "image_encoder")).strip("/")
    if "/" not in encoder:  # diffusers: a bare name is a folder next to the weights
        encoder = str(PurePosixPath(subfolder, encoder)) if subfolder else encoder
    return repo, subfolder or None, weight, encoder


def check(entry: ModelEntry) -> str | None:
    """None when the entry has no IP-Adapter or its files are here; else what to download."""
    if not configured(entry):
        return None
    repo, subfolder, weight, encoder = _files(entry)
    if not weight:
        return (
            f'misconfigured: {entry.name}: ip_adapter needs ip_adapter_weight_name (e.g. "ip-adapter_sd15.safetensors")'
        )
    wanted = [str(PurePosixPath(subfolder, weight)) if subfolder else weight, f"{encoder}/config.json"]
    source = sources.locate(repo)
    if source.kind == "folder":
        missing = [name for name in wanted if not (source.path / name).is_file()]
    elif source.kind == "hub":
        missing = [name for name in wanted if sources.cached(source.where, name, entry) is None]
    else:
        return f"needs weights: ip-adapter {repo} not found"
    if not missing:
        return None
    fetch = f" (hf download {repo} {wanted[0]} --include '{encoder}/*')" if source.kind == "hub" else ""
    return f"needs weights: ip-adapter {repo}: {', '.join(missing)} missing{fetch}"


def attach(pipe: Any, entry: ModelEntry) -> None:
    """Load the entry's IP-Adapter (and its image encoder) into ``pipe``; nothing when none is set."""
    if not configured(entry):
        return
    reason = check(entry)
    if reason:
        raise sources.MissingWeights(reason)
    repo, subfolder, weight, encoder = _files(entry)
    source = sources.locate(repo)
    kwargs: dict[str, Any] = {"local_files_only": sources.offline(entry)}
    if source.kind == "hub":
        kwargs["cache_dir"] = sources.hub_cache_dir(entry)
    pipe.load_ip_adapter(
        source.where, subfolder=subfolder or "", weight_name=weight, image_encoder_folder=encoder, **kwargs
    )


def batch_key(work: Work) -> tuple[int, ...]:
    """A part of img2img's batch key: a work with references runs alone (the adapter takes one image list
    for the whole batch)."""
    return (id(work),) if work.references else ()


def call_kwargs(pipe: Any, works: list[Work]) -> dict[str, Any]:
    """The pipeline arguments for a batch's references (``batch_key`` keeps a work that has some alone),
    with the adapter's scale set for this run."""
    work = works[0]
    if not configured(work.entry):
        for each in works:
            if each.references:
                each.notes.append("reference images ignored: this model has no IP-Adapter")
        return {}
    scale = work.request.ip_adapter_scale
    if scale is None:
        scale = float(work.entry.options.get("ip_adapter_scale", DEFAULT_SCALE))
    # The adapter needs an image on every run: with no references it sees the source, at scale 0.
    references = list(work.references) or [work.image]
    pipe.set_ip_adapter_scale(scale if work.references else 0.0)
    return {"ip_adapter_image": [references]}
