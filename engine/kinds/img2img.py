"""The ``diffusers-img2img`` model kind: Stable Diffusion 1.x/2.x/SDXL (and Turbo/LCM) through diffusers.

``source`` in models.toml is one of

* a local diffusers folder (with ``model_index.json``) or a hub id, loaded with
  ``AutoPipelineForImage2Image.from_pretrained``; a hub id must already be in the local Hugging Face
  cache: nothing is downloaded when a job runs;
* a single-file checkpoint (``.safetensors``/``.ckpt``, A1111/Civitai style), a local path or a
  ``https://huggingface.co/<repo>/blob/<rev>/<file>`` link to a cached file, loaded with
  ``from_single_file``. diffusers builds the pipeline from a diffusers-format *config* (the json and
  tokenizer files, no weights): ``config = "<local folder or hub id>"`` in the entry, or else the
  default repo for the checkpoint's architecture (SD 1.5, SD 2.1, SDXL base/refiner), which must be
  in the cache.

Options (models.toml keys besides the common ones): ``dtype`` ("float16" default on CUDA,
"bfloat16", "float32"; always float32 on CPU), ``scheduler`` (a diffusers scheduler class name, e.g.
"EulerAncestralDiscreteScheduler") and ``scheduler_config`` (a table of overrides, e.g.
``{timestep_spacing = "trailing"}``), ``safety_checker = false`` to drop the pipeline's safety
checker (kept by default), ``offline = true`` (also implied by ``HF_HUB_OFFLINE``), ``variant``
("fp16"), ``revision``, ``cache_dir``, and for single files ``architecture`` ("sd1", "sd2", "sdxl",
"sdxl-refiner") and ``config``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.work import UserFacingError, Work

log = logging.getLogger(__name__)

ENGINE_EXTRA = "needs the engine extra: pip install 'remixbot[engine]'"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
_PATH_SUFFIXES = SINGLE_FILE_SUFFIXES + (".bin",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)$")
_TRUE = {"1", "true", "yes", "on"}

# models.toml ``architecture`` -> diffusers' model type (its key for the default config repo).
_ARCHITECTURES = {
    "sd1": "v1", "sd15": "v1", "sd1.5": "v1", "v1": "v1",
    "sd2": "v2", "sd21": "v2", "sd2.1": "v2", "v2": "v2",
    "sdxl": "xl_base", "xl": "xl_base", "xl_base": "xl_base",
    "sdxl-refiner": "xl_refiner", "sdxl_refiner": "xl_refiner", "xl_refiner": "xl_refiner",
}
# Mirrors diffusers.loaders.single_file_utils.DIFFUSERS_DEFAULT_PIPELINE_PATHS, so check() needs no torch.
_DEFAULT_CONFIG_REPOS = {
    "v1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "v2": "stabilityai/stable-diffusion-2-1",
    "xl_base": "stabilityai/stable-diffusion-xl-base-1.0",
    "xl_refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
}
_XL_TYPES = {"xl_base", "xl_refiner", "xl_inpaint", "playground-v2-5"}
_SUPPORTED_TYPES = {"v1", "v2", "xl_base", "xl_refiner", "playground-v2-5"}  # plain img2img: no inpainting
_DTYPES = {
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float32": "float32", "fp32": "float32",
}


class MissingWeights(UserFacingError, FileNotFoundError):
    """Weights or configs that are not on this machine; the message says what to download."""


class BlankOutput(UserFacingError):
    """The pipeline produced a blank image: NaNs (a float16 overflow) or a safety-checker blackout.

    The message is safe to show to the user.
    """


# --- check -----------------------------------------------------------------------------------------


def check(entry: ModelEntry) -> str | None:
    """None when ``entry`` can be loaded here; else a user-safe reason. Never touches the network."""
    if any(importlib.util.find_spec(name) is None for name in ("torch", "diffusers", "transformers")):
        return ENGINE_EXTRA
    source = entry.source.strip()
    if not source:
        return f"needs weights: no source is set for {entry.name} in models.toml"
    try:
        kind, where = _classify(source)
        if kind == "missing":
            return f"needs weights: {where} not found"
        if kind == "url":
            repo, revision, filename = where
            cached = _cached(repo, filename, entry, revision)
            if cached is None:
                return f"needs weights: download {repo} {filename} first (hf download {repo} {filename})"
            return _check_single_file_config(entry, Path(cached))
        if kind == "file":
            if where.suffix.lower() not in SINGLE_FILE_SUFFIXES:
                return f"needs weights: {where} is not a .safetensors or .ckpt checkpoint"
            return _check_single_file_config(entry, where)
        if kind == "folder":
            if not (where / "model_index.json").is_file():
                return f"needs weights: {where} has no model_index.json (not a diffusers pipeline folder)"
        elif _cached(where, "model_index.json", entry, entry.options.get("revision")) is None:
            return f"needs weights: download {where} first (hf download {where})"
        return _check_options(entry)
    except ValueError as exc:  # an unknown architecture, a file that is not a safetensors checkpoint
        return f"misconfigured: {entry.name}: {exc}"
    except Exception:  # a broken cache or checkpoint header must not take the registry down
        log.exception("checking %s failed", entry.name)
        return f"needs weights: could not read {source}"


def _classify(source: str) -> tuple[str, Any]:
    """("folder"|"file", Path), ("hub", repo id), ("url", (repo, revision, filename)) or ("missing", text)."""
    match = _HUB_URL.match(source)
    if match:
        return "url", match.groups()
    if source.startswith(("http://", "https://")):
        return "missing", source
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder", path
    if path.is_file():
        return "file", path
    looks_like_path = (
        path.is_absolute() or source.startswith((".", "~")) or "\\" in source or source.count("/") > 1
        or source.lower().endswith(_PATH_SUFFIXES)
    )
    if looks_like_path or not _HUB_ID.match(source):
        return "missing", str(path)
    return "hub", source


def _hub_cache_dir(entry: ModelEntry) -> str:
    """The hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if entry.options.get("cache_dir"):
        return str(Path(entry.options["cache_dir"]).expanduser())
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _cached(repo: str, filename: str, entry: ModelEntry, revision: str | None = None) -> str | None:
    """The cached file's path, or None. A cache lookup only: no network call."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=_hub_cache_dir(entry), revision=revision)
    return found if isinstance(found, str) else None


def _check_single_file_config(entry: ModelEntry, checkpoint: Path) -> str | None:
    if not entry.options.get("config"):
        model_type = _model_type(entry, checkpoint)
        if model_type is not None and model_type not in _SUPPORTED_TYPES:
            return (f"misconfigured: {checkpoint.name} is an unsupported ({model_type}) checkpoint, "
                    "not an SD 1.x/2.x/SDXL one")
    config = _single_file_config(entry, checkpoint)
    hint = "set config = \"<a local diffusers folder>\" for this model in models.toml"
    if config is None:
        return f"needs weights: cannot tell which model {checkpoint.name} is; {hint}"
    if Path(config).expanduser().is_dir():
        if not (Path(config).expanduser() / "model_index.json").is_file():
            return f"needs weights: config {config} has no model_index.json"
    elif _classify(config)[0] != "hub":
        return f"needs weights: config {config} not found"
    elif _cached(config, "model_index.json", entry) is None:
        return (
            f"needs weights: {checkpoint.name} needs the configs of {config}: download them first "
            f"(hf download {config} --include '*.json' '*.txt'), or {hint}"
        )
    return _check_options(entry)


def _check_options(entry: ModelEntry) -> str | None:
    dtype = entry.options.get("dtype")
    if dtype is not None and str(dtype).lower() not in _DTYPES:
        return f"misconfigured: unknown dtype {dtype!r} for {entry.name} (float16, bfloat16 or float32)"
    name = entry.options.get("scheduler")
    if name and _scheduler_class(name) is None:
        return f"misconfigured: unknown scheduler {name!r} for {entry.name} in models.toml"
    return None


def _scheduler_class(name: str) -> type | None:
    import diffusers

    cls = getattr(diffusers, str(name), None)
    if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin):
        return cls
    return None


# --- single-file checkpoints -----------------------------------------------------------------------


def _architecture(entry: ModelEntry) -> str | None:
    value = entry.options.get("architecture")
    if not value:
        return None
    arch = _ARCHITECTURES.get(str(value).lower().replace(" ", ""))
    if arch is None:
        raise ValueError(f"unknown architecture {value!r} (use one of {', '.join(sorted(_ARCHITECTURES))})")
    return arch


class _HeaderView(Mapping):
    """A safetensors checkpoint's keys and shapes, read from its header only (no tensor data)."""

    @dataclass(frozen=True)
    class _Shape:
        shape: tuple[int, ...]

    def __init__(self, path: Path):
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 1 << 28:
                raise ValueError(f"{path} is not a safetensors file")
            header = json.loads(fh.read(size))
        header.pop("__metadata__", None)
        self._shapes = {key: tuple(value["shape"]) for key, value in header.items()}

    def __getitem__(self, key: str) -> _Shape:
        return self._Shape(self._shapes[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def _model_type(entry: ModelEntry, checkpoint: Path) -> str | None:
    """diffusers' model type for a single-file checkpoint ("v1", "xl_base", …), if it can be told cheaply."""
    arch = _architecture(entry)
    if arch:
        return arch
    if checkpoint.suffix.lower() == ".safetensors":
        try:
            from diffusers.loaders.single_file_utils import infer_diffusers_model_type
        except ImportError:  # an older diffusers: fall back to the file name
            return None
        return infer_diffusers_model_type(_HeaderView(checkpoint))
    return None  # a pickled .ckpt: diffusers infers it when it loads the whole file


def _single_file_config(entry: ModelEntry, checkpoint: Path) -> str | None:
    """The diffusers config (local folder or hub id) that ``from_single_file`` will use."""
    if entry.options.get("config"):
        return str(entry.options["config"])
    model_type = _model_type(entry, checkpoint)
    if model_type is None:  # .ckpt without options: diffusers infers it; SD 1.5 unless the name says XL
        model_type = "xl_base" if "xl" in checkpoint.name.lower() else "v1"
    if model_type in _DEFAULT_CONFIG_REPOS:
        return _DEFAULT_CONFIG_REPOS[model_type]
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS

    found = DIFFUSERS_DEFAULT_PIPELINE_PATHS.get(model_type, {})
    return None if "subfolder" in found else found.get("pretrained_model_name_or_path")


# --- load ------------------------------------------------------------------------------------------


def _offline(entry: ModelEntry) -> bool:
    return bool(entry.options.get("offline")) or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def _dtype(entry: ModelEntry, device: str):
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    name = str(entry.options.get("dtype", "float16")).lower()
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r} for {entry.name} (float16, bfloat16 or float32)")
    return getattr(torch, _DTYPES[name])


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); use what this version takes."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


@dataclass
class Img2ImgModel:
    pipe: Any
    device: str
    label: str

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        import torch

        request, entry = work.request, work.entry
        count = len(work.seeds)
        if count == 0:
            return []
        steps, strength = denoising_schedule(
            request.num_inference_steps or entry.num_inference_steps, request.strength
        )
        expected = min(int(steps * strength), steps)
        guidance = entry.guidance_scale if request.guidance_scale is None else request.guidance_scale
        generator_device = self.device if self.device.startswith("cuda") else "cpu"
        generators = [torch.Generator(device=generator_device).manual_seed(int(seed)) for seed in work.seeds]

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            # num_timesteps is the loop's real length (set before the first step): int(steps * strength)
            # for first-order schedulers, more for PNDM (+1) or second-order ones (Heun, DPM2).
            total = getattr(pipe, "num_timesteps", None) or expected
            progress(min(i + 1, total), total)  # raises JobCancelled: it propagates out of the pipeline
            return kwargs

        result = self.pipe(
            prompt=[request.prompt] * count,
            negative_prompt=[request.negative_prompt] * count if request.negative_prompt else None,
            image=work.image,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="np",  # floats: NaNs are still visible; converted to PIL as "pil" would
            callback_on_step_end=on_step_end,
        )
        arrays = result.images
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * count
        for array, nsfw in zip(arrays, flagged, strict=False):
            if nsfw:
                raise BlankOutput("the safety checker blanked an image; try another prompt or seed")
            if _is_blank(array):
                log.warning(
                    "%s produced a blank image (NaN or all black): a float16 overflow? try dtype = "
                    "\"bfloat16\" or a fixed VAE", self.label,
                )
                raise BlankOutput("the model produced a blank image; try again with another seed")
        return [image.convert("RGB") for image in _to_pil(arrays)]


def _is_blank(array: Any) -> bool:
    import numpy as np

    return bool(np.isnan(array).any()) or not bool(np.any(array))


def _to_pil(arrays: Any) -> list[Image.Image]:
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.numpy_to_pil(arrays)


def denoising_schedule(steps: int, strength: float) -> tuple[int, float]:
    """(num_inference_steps, strength) such that img2img runs at least one denoising step.

    diffusers' img2img runs ``int(steps * strength)`` of the schedule's steps; Turbo models with two
    steps and a low strength would run none, so the schedule is lengthened until one step runs.
    """
    steps = max(1, int(steps))
    strength = min(max(float(strength), 0.01), 1.0)
    while int(steps * strength) < 1:
        steps += 1
    return steps, strength


def load(entry: ModelEntry, device: str) -> Img2ImgModel:
    """Load the pipeline onto ``device`` ("cpu" or "cuda[:n]"), in float16 on CUDA unless told otherwise."""
    import diffusers

    source = entry.source.strip()
    kind, where = _classify(source)
    if kind == "missing":
        raise MissingWeights(f"needs weights: {where} not found")
    offline = _offline(entry)
    common: dict[str, Any] = {_dtype_kwarg(): _dtype(entry, device), "local_files_only": offline}
    disable_checker = entry.options.get("safety_checker") is False

    if kind in ("file", "url"):
        if kind == "url":
            repo, revision, filename = where
            cached = _cached(repo, filename, entry, revision)
            if cached is None:
                raise MissingWeights(f"needs weights: download {repo} {filename} first")
            where = Path(cached)
        model_type = _model_type(entry, where)
        xl = model_type in _XL_TYPES if model_type else "xl" in where.name.lower()
        cls = diffusers.StableDiffusionXLImg2ImgPipeline if xl else diffusers.StableDiffusionImg2ImgPipeline
        # A pickled .ckpt without options: diffusers infers its configs from the loaded weights, unless
        # offline, where the configs check() looked for are used (diffusers would try to download).
        known = model_type or offline or entry.options.get("config")
        config = _single_file_config(entry, where) if known else None
        pipe = cls.from_single_file(str(where), config=_local_config(entry, config, offline), **common)
    else:
        kwargs = dict(common)
        if kind == "hub":
            kwargs["cache_dir"] = _hub_cache_dir(entry)
        for option in ("variant", "revision"):
            if entry.options.get(option):
                kwargs[option] = entry.options[option]
        index = _model_index(entry, kind, where)
        if disable_checker and "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = diffusers.AutoPipelineForImage2Image.from_pretrained(str(where), **kwargs)

    if disable_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    name = entry.options.get("scheduler")
    overrides = dict(entry.options.get("scheduler_config") or {})
    if name or overrides:
        cls = _scheduler_class(name) if name else type(pipe.scheduler)
        if cls is None:
            raise ValueError(f"unknown scheduler {name!r} for {entry.name}")
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Img2ImgModel(pipe=pipe, device=device, label=f"diffusers {type(pipe).__name__}")


def _local_config(entry: ModelEntry, config: str | None, offline: bool) -> str | None:
    """A single file's diffusers config as a local folder when it can be one.

    Given a hub id whose configs are not cached, diffusers downloads them even with
    ``local_files_only=True``; offline that is refused here instead.
    """
    if not config or Path(config).expanduser().is_dir():
        return str(Path(config).expanduser()) if config else None
    index = _cached(config, "model_index.json", entry)
    if index is not None:
        return str(Path(index).parent)  # the cached snapshot: model_index.json and the component configs
    if offline:
        raise MissingWeights(f"needs weights: download the configs of {config} first")
    return config


def _model_index(entry: ModelEntry, kind: str, where: Any) -> dict:
    if kind == "folder":
        path: str | Path | None = Path(where) / "model_index.json"
    else:
        path = _cached(where, "model_index.json", entry, entry.options.get("revision"))
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
