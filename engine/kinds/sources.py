"""Where a model's weights come from and in which dtype they load: the one place every kind asks.

A ``source`` in models.toml (or an IP-Adapter's, or a single file's ``config``) is one of

* a local folder saved with ``save_pretrained``;
* a single file on this machine (a ``.safetensors``/``.ckpt`` checkpoint, spandrel's ``.pth``);
* a hub id ("stabilityai/sd-turbo") or a ``https://huggingface.co/<repo>/blob/<rev>/<file>`` link,
  which must already be in the local Hugging Face cache: nothing is downloaded when a job runs.

``locate`` tells them apart from the text and the file system alone; ``cached`` looks a hub file up
in the cache (never on the network). Loading is offline (``local_files_only``) when the entry says
``offline = true`` or ``HF_HUB_OFFLINE`` is set. The dtype is explicit: float16 on CUDA unless the
entry's ``dtype`` says otherwise, float32 on the CPU unless its ``cpu_dtype`` says bfloat16.

A single model beside the pipeline (``tiny_vae``: a TAESD autoencoder) is a folder or a cached hub
id too: ``component_problem`` checks it, ``from_pretrained_component`` loads it in the entry's dtype.

Nothing here imports torch or diffusers until a load asks for them, so a kind's ``check`` stays cheap.
docs/models.md is the operator's guide to these options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bot.models import ModelEntry
from engine.work import UserFacingError

if TYPE_CHECKING:
    import torch

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
_PATH_SUFFIXES = SINGLE_FILE_SUFFIXES + (".bin",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)$")
_TRUE = {"1", "true", "yes", "on"}

Dtype = Literal["float16", "bfloat16", "float32"]
# models.toml spellings -> the torch dtype's name
DTYPES: dict[str, Dtype] = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
}


class MissingWeights(UserFacingError, FileNotFoundError):
    """Weights or configs that are not on this machine; the message says what to download."""


@dataclass(frozen=True)
class Source:
    """A source as written, told apart: a folder, a file, a hub id, a hub file link, or missing."""

    kind: Literal["folder", "file", "hub", "url", "missing"]
    where: str  # the folder's or file's path, the hub repo id, or (missing) what was not found
    revision: str | None = None  # url: the revision in the link
    filename: str = ""  # url: the file's path in the repo

    @property
    def path(self) -> Path:
        return Path(self.where)


def locate(source: str) -> Source:
    """What ``source`` names, from its text and the file system (no network, no cache lookup)."""
    match = _HUB_URL.match(source)
    if match:
        repo, revision, filename = match.groups()
        return Source("url", repo, revision, filename)
    if source.startswith(("http://", "https://")):
        return Source("missing", source)
    path = Path(source).expanduser()
    if path.is_dir():
        return Source("folder", str(path))
    if path.is_file():
        return Source("file", str(path))
    looks_like_path = (
        path.is_absolute()
        or source.startswith((".", "~"))
        or "\\" in source
        or source.count("/") > 1
        or source.lower().endswith(_PATH_SUFFIXES)
    )
    if looks_like_path or not _HUB_ID.match(source):
        return Source("missing", str(path))
    return Source("hub", source)


def hub_cache_dir(entry: ModelEntry) -> str:
    """The hub cache: the entry's ``cache_dir``, else read from the environment now (huggingface_hub
    reads it once, at import)."""
    if entry.options.get("cache_dir"):
        return str(Path(entry.options["cache_dir"]).expanduser())
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached(repo: str, filename: str, entry: ModelEntry, revision: str | None = None) -> str | None:
    """The cached file's path, or None. A cache lookup only: no network call."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir(entry), revision=revision)
    return found if isinstance(found, str) else None


def cached_link(source: Source, entry: ModelEntry) -> Path | None:
    """A hub file link's file in the cache, or None."""
    found = cached(source.where, source.filename, entry, source.revision)
    return Path(found) if found else None


def offline(entry: ModelEntry) -> bool:
    """Whether loading must not even try the network: ``offline = true`` or ``HF_HUB_OFFLINE``."""
    return bool(entry.options.get("offline")) or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def dtype_problem(entry: ModelEntry) -> str | None:
    """A user-safe reason when ``dtype`` or ``cpu_dtype`` names no dtype, else None."""
    for option in ("dtype", "cpu_dtype"):
        name = entry.options.get(option)
        if name is not None and str(name).lower() not in DTYPES:
            return f"misconfigured: unknown {option} {name!r} for {entry.name} (float16, bfloat16 or float32)"
    return None


def dtype_name(entry: ModelEntry, device: str) -> Dtype:
    """The dtype the entry's weights take on ``device``: on CUDA its ``dtype`` (float16 by default), on
    the CPU its ``cpu_dtype`` (float32 by default; bfloat16 is the only other choice there)."""
    if not device.startswith("cuda"):
        name = str(entry.options.get("cpu_dtype", "float32")).lower()
        return "bfloat16" if DTYPES.get(name) == "bfloat16" else "float32"
    name = str(entry.options.get("dtype", "float16")).lower()
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r} for {entry.name} (float16, bfloat16 or float32)")
    return DTYPES[name]


def torch_dtype(entry: ModelEntry, device: str) -> torch.dtype:
    """``dtype_name`` as a torch dtype."""
    import torch

    dtype: torch.dtype = getattr(torch, dtype_name(entry, device))
    return dtype


def dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); the one this version takes."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def pretrained_kwargs(entry: ModelEntry, source: Source, device: str) -> dict[str, Any]:
    """The keyword arguments of a diffusers ``from_pretrained`` for a folder or hub source: the dtype,
    offline or not, the cache, and the entry's ``variant`` and ``revision``."""
    kwargs: dict[str, Any] = {dtype_kwarg(): torch_dtype(entry, device), "local_files_only": offline(entry)}
    if source.kind == "hub":
        kwargs["cache_dir"] = hub_cache_dir(entry)
    for option in ("variant", "revision"):
        if entry.options.get(option):
            kwargs[option] = entry.options[option]
    return kwargs


def component_problem(where: str, entry: ModelEntry, option: str) -> str | None:
    """None when the single model ``where`` (the entry's ``option``: a folder or a cached hub id holding
    a diffusers ``config.json`` and its weights) can be loaded here, else a user-safe reason."""
    source = locate(str(where).strip())
    if source.kind == "folder":
        if not (source.path / "config.json").is_file():
            return f"needs weights: {option} {source.where} has no config.json (not a diffusers model folder)"
        return None
    if source.kind == "hub":
        if cached(source.where, "config.json", entry) is None:
            return f"needs weights: download {source.where} first (hf download {source.where}) for {option}"
        return None
    return f"needs weights: {option} {source.where} not found (a diffusers model folder or a hub id)"


def from_pretrained_component(cls: Any, where: str, entry: ModelEntry, device: str) -> Any:
    """``cls.from_pretrained`` of a single model (a folder or a cached hub id) in the entry's dtype, on no
    device yet. Never downloads: a hub id loads from the cache only."""
    source = locate(str(where).strip())
    if source.kind not in ("folder", "hub"):
        raise MissingWeights(f"needs weights: {source.where} not found")
    kwargs: dict[str, Any] = {dtype_kwarg(): torch_dtype(entry, device), "local_files_only": True}
    if source.kind == "hub":
        kwargs["cache_dir"] = hub_cache_dir(entry)
    return cls.from_pretrained(source.where, **kwargs)
