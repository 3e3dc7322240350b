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

Speed options (each one can be switched per entry; ``benchmarks/`` measures whether it pays):
``sdpa = true`` makes sure attention runs through PyTorch's scaled-dot-product attention
(``AttnProcessor2_0``), ``channels_last`` (default: on CUDA) stores the UNet's weights NHWC,
``compile`` (false, ``"regional"``: the UNet's repeated transformer blocks, ``"full"``: the whole UNet;
``true`` means regional) compiles with ``torch.compile`` and warms up at load on ``compile_sizes``
(longest sides, default the entry's ``size``; ``compile_mode`` passes a torch.compile mode),
``vae_tiling`` (default 1280) decodes in tiles above that longest side (0: never), ``vae_slicing =
true`` decodes a batch one image at a time (same pixels, less memory), ``host_sigmas = true`` keeps the
scheduler's sigmas on the host (no device syncs per step; diffusers' Euler/DPM/Heun/LMS schedulers
already do), ``cudnn_benchmark = true`` (CUDA) lets cuDNN pick its fastest convolutions, and
``cpu_dtype`` ("float32" default, "bfloat16") is the dtype on CPU.

Batching: ``Img2ImgModel.run_batch`` runs several works that share a ``batch_key`` (working size,
steps, strength, guidance) as one pipeline call, with one seeded generator per output, so that every
output matches its unbatched run within 1/255 per pixel.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.jobs import Action, Progress
from bot.models import ModelEntry
from engine.kinds import ip_adapter, outpaint, prompts
from engine.kinds.loras import LoadedLoras
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
    "sd1": "v1",
    "sd15": "v1",
    "sd1.5": "v1",
    "v1": "v1",
    "sd2": "v2",
    "sd21": "v2",
    "sd2.1": "v2",
    "v2": "v2",
    "sdxl": "xl_base",
    "xl": "xl_base",
    "xl_base": "xl_base",
    "sdxl-refiner": "xl_refiner",
    "sdxl_refiner": "xl_refiner",
    "xl_refiner": "xl_refiner",
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
# models.toml ``compile`` -> what gets compiled
_COMPILE = {None: None, False: None, True: "regional", "regional": "regional", "full": "full"}
VAE_TILING = 1280  # default: decode in tiles above this longest side (px)
BATCHES = True  # Img2ImgModel.run_batch: the runner may run several jobs as one batch
_DTYPES = {
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
        path.is_absolute()
        or source.startswith((".", "~"))
        or "\\" in source
        or source.count("/") > 1
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
            return (
                f"misconfigured: {checkpoint.name} is an unsupported ({model_type}) checkpoint, "
                "not an SD 1.x/2.x/SDXL one"
            )
    config = _single_file_config(entry, checkpoint)
    hint = 'set config = "<a local diffusers folder>" for this model in models.toml'
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
    for option in ("dtype", "cpu_dtype"):
        dtype = entry.options.get(option)
        if dtype is not None and str(dtype).lower() not in _DTYPES:
            return f"misconfigured: unknown {option} {dtype!r} for {entry.name} (float16, bfloat16 or float32)"
    if entry.options.get("compile") not in _COMPILE:
        return f"misconfigured: compile = {entry.options['compile']!r} for {entry.name} (false, regional or full)"
    tiling = entry.options.get("vae_tiling", 0)
    if isinstance(tiling, bool) or not isinstance(tiling, int) or tiling < 0:
        return f"misconfigured: vae_tiling = {tiling!r} for {entry.name} (a longest side in pixels, 0: never)"
    name = entry.options.get("scheduler")
    if name and _scheduler_class(name) is None:
        return f"misconfigured: unknown scheduler {name!r} for {entry.name} in models.toml"
    return ip_adapter.check(entry)


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
        name = str(entry.options.get("cpu_dtype", "float32")).lower()
        return torch.bfloat16 if _DTYPES.get(name) == "bfloat16" else torch.float32
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
    vae_tiling: int = VAE_TILING  # decode in tiles above this longest side (px); 0: never
    speed: dict[str, Any] = field(default_factory=dict)  # the speed options in effect
    loras: LoadedLoras = field(default_factory=LoadedLoras)  # resident LoRAs, the active ones

    def batch_key(self, work: Work) -> tuple:
        """Works with equal keys can run as one batch: same working size, steps, strength, guidance, LoRAs."""
        steps, strength, guidance = _call_settings(work)
        alone = id(work) if work.action is Action.outpaint else None  # an outpaint runs alone (run)
        return (alone, work.image.size, steps, strength, guidance, ip_adapter.batch_key(work), work.request.loras)

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        if work.action is Action.outpaint:  # zoom out / pan: the border redrawn by the inpainting twin
            self.loras.activate(self.pipe, work)
            steps, _, guidance = _call_settings(work)
            return outpaint.redraw(self.pipe, work, progress, steps=steps, guidance=guidance)
        outcome = self.run_batch([work], progress)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(self, works: list[Work], progress: Progress) -> list[list[Image.Image] | Exception]:
        """Works sharing one ``batch_key`` as one pipeline call: per work, its images or its error.

        Every output row has its own generator seeded with its seed (the VAE encoding's sample and
        the noise are drawn per row), so a work's pixels do not depend on what it was batched with.
        An error that concerns one work (a blank image) is that work's result; anything else raises.
        """
        import torch

        rows = [(work, seed) for work in works for seed in work.seeds]
        if not rows:
            return [[] for _ in works]
        steps, strength, guidance = _call_settings(works[0])
        expected = min(int(steps * strength), steps)
        generator_device = self.device if self.device.startswith("cuda") else "cpu"
        generators = [torch.Generator(device=generator_device).manual_seed(int(seed)) for _, seed in rows]
        negatives = [work.request.negative_prompt for work, _ in rows]

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            # num_timesteps is the loop's real length (set before the first step): int(steps * strength)
            # for first-order schedulers, more for PNDM (+1) or second-order ones (Heun, DPM2).
            total = getattr(pipe, "num_timesteps", None) or expected
            progress(min(i + 1, total), total)  # raises JobCancelled: it propagates out of the pipeline
            return kwargs

        self._set_tiling(works[0].image.size)
        self.loras.activate(self.pipe, works[0])  # one batch key: the same LoRAs for every work
        with torch.inference_mode():
            result = self.pipe(
                **prompts.call_kwargs(self.pipe, [work.request.prompt for work, _ in rows], negatives),
                # one source for one work (the pipeline repeats it); else one per row
                image=works[0].image if len(works) == 1 else [work.image for work, _ in rows],
                strength=strength,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                output_type="np",  # floats: NaNs are still visible; converted to PIL as "pil" would
                callback_on_step_end=on_step_end,
                **ip_adapter.call_kwargs(self.pipe, works),
            )
        arrays = result.images
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * len(rows)
        outcomes: list[list[Image.Image] | Exception] = []
        start = 0
        for work in works:
            end = start + len(work.seeds)
            outcomes.append(self._images(arrays[start:end], flagged[start:end]))
            start = end
        return outcomes

    def _images(self, arrays: Any, flagged: Any) -> list[Image.Image] | Exception:
        for array, nsfw in zip(arrays, flagged, strict=False):
            if nsfw:
                return BlankOutput("the safety checker blanked an image; try another prompt or seed")
            if _is_blank(array):
                log.warning(
                    "%s produced a blank image (NaN or all black): a float16 overflow? try dtype = "
                    '"bfloat16" or a fixed VAE',
                    self.label,
                )
                return BlankOutput("the model produced a blank image; try again with another seed")
        return [image.convert("RGB") for image in _to_pil(arrays)]

    def _set_tiling(self, size: tuple[int, int]) -> None:
        vae = getattr(self.pipe, "vae", None)
        if vae is None or not hasattr(vae, "use_tiling"):
            return
        if self.vae_tiling and max(size) > self.vae_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()


def _call_settings(work: Work) -> tuple[int, float, float]:
    """(num_inference_steps, strength, guidance_scale) of the pipeline call for ``work``."""
    request, entry = work.request, work.entry
    steps = request.num_inference_steps or entry.num_inference_steps
    steps, strength = denoising_schedule(steps, request.strength)
    guidance = entry.guidance_scale if request.guidance_scale is None else request.guidance_scale
    return steps, strength, float(guidance)


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
    ip_adapter.attach(pipe, entry)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    model = Img2ImgModel(
        pipe=pipe,
        device=device,
        label=f"diffusers {type(pipe).__name__}",
        vae_tiling=int(entry.options.get("vae_tiling", VAE_TILING)),
    )
    model.speed = _speed_up(model, entry)
    return model


# --- speed -----------------------------------------------------------------------------------------


def _speed_up(model: Img2ImgModel, entry: ModelEntry) -> dict[str, Any]:
    """Apply the entry's speed options to a loaded pipeline; returns what is in effect."""
    import torch

    pipe, options = model.pipe, entry.options
    cuda = model.device.startswith("cuda")
    speed: dict[str, Any] = {"dtype": str(pipe.unet.dtype).removeprefix("torch.")}
    if options.get("sdpa", True):
        speed["sdpa"] = _use_sdpa(pipe)
    if options.get("channels_last", cuda):
        pipe.unet.to(memory_format=torch.channels_last)
        speed["channels_last"] = True
    if options.get("vae_slicing", True) and hasattr(pipe.vae, "use_slicing"):
        pipe.vae.enable_slicing()
        speed["vae_slicing"] = True
    if options.get("host_sigmas", True):
        _keep_sigmas_on_host(pipe.scheduler)
        speed["host_sigmas"] = True
    if cuda and options.get("cudnn_benchmark", True):
        torch.backends.cudnn.benchmark = True
        speed["cudnn_benchmark"] = True
    speed["vae_tiling"] = model.vae_tiling
    how = _COMPILE.get(options.get("compile"))
    if how:
        speed["compile"] = _compile(model, entry, how)
    log.info("%s: %s", entry.name, ", ".join(f"{k}={v}" for k, v in speed.items()))
    return speed


def _use_sdpa(pipe: Any) -> bool:
    """Make every plain attention processor of the UNet and VAE the SDPA one; True when all are SDPA."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    every = True
    for module in (pipe.unet, getattr(pipe, "vae", None)):
        processors = getattr(module, "attn_processors", None)
        if not processors:
            continue
        if any(type(p) is AttnProcessor for p in processors.values()):
            module.set_attn_processor(
                {name: AttnProcessor2_0() if type(p) is AttnProcessor else p for name, p in processors.items()}
            )
        every = every and all(type(p) is AttnProcessor2_0 for p in module.attn_processors.values())
    return every


def _keep_sigmas_on_host(scheduler: Any) -> None:
    """After every ``set_timesteps``, move ``sigmas`` to the CPU: indexing them then costs no device sync."""
    set_timesteps = scheduler.set_timesteps
    if getattr(set_timesteps, "keeps_sigmas_on_host", False):
        return

    @functools.wraps(set_timesteps)  # keeps the signature diffusers inspects
    def on_host(*args: Any, **kwargs: Any) -> Any:
        done = set_timesteps(*args, **kwargs)
        sigmas = getattr(scheduler, "sigmas", None)
        if getattr(sigmas, "device", None) is not None and sigmas.device.type != "cpu":
            scheduler.sigmas = sigmas.to("cpu")
        return done

    on_host.keeps_sigmas_on_host = True  # type: ignore[attr-defined]
    scheduler.set_timesteps = on_host


def _compile(model: Img2ImgModel, entry: ModelEntry, how: str) -> str:
    """Compile the UNet (regional where diffusers supports it) and warm it up on the configured sizes."""
    unet = model.pipe.unet
    kwargs: dict[str, Any] = {"fullgraph": True}
    if entry.options.get("compile_mode"):
        kwargs["mode"] = str(entry.options["compile_mode"])
    if how == "regional" and getattr(unet, "_repeated_blocks", None):
        unet.compile_repeated_blocks(**kwargs)
    else:
        how = "full"
        unet.compile(**kwargs)
    for side in entry.options.get("compile_sizes") or [entry.size]:
        _warm_up(model, entry, int(side))
    return how


def _warm_up(model: Img2ImgModel, entry: ModelEntry, side: int) -> None:
    """Two short runs at ``side`` (batch 1, then 2: the batch dimension becomes dynamic) to compile now."""
    from bot.jobs import Action, Request

    side = max(entry.multiple, side - side % entry.multiple)
    image = Image.new("RGB", (side, side), (128, 128, 128))
    request = Request(
        prompt="warm-up", model=entry.name, strength=1.0, num_inference_steps=2, guidance_scale=entry.guidance_scale
    )
    for seeds in ((0,), (0, 1)):
        work = Work(
            action=Action.remix,
            request=request,
            entry=entry,
            image=image,
            references=(),
            seeds=seeds,
            device=model.device,
        )
        model.run_batch([work], lambda step, total: None)
    log.info("%s: compiled and warmed up at %d px", entry.name, side)


def expected_nbytes(entry: ModelEntry, device: str) -> int | None:
    """The bytes ``load`` will take on ``device``, read from the safetensors headers (no weights read).

    None when it cannot be told cheaply (pickled weights, a missing source).
    """
    try:
        files = _weight_files(entry)
    except Exception:  # noqa: BLE001 - an estimate only
        log.exception("could not list the weights of %s", entry.name)
        return None
    if not files:
        return None
    element = _dtype(entry, device).itemsize
    total = 0
    for path in files:
        view = _HeaderView(path)
        for key in view:
            if key.startswith("model_ema."):  # EMA copies in old checkpoints are not loaded
                continue
            count = 1
            for dim in view[key].shape:
                count *= dim
            total += count * element
    return total


def _weight_files(entry: ModelEntry) -> list[Path]:
    """The safetensors files ``load`` reads for ``entry``; [] when they are not safetensors or not here."""
    kind, where = _classify(entry.source.strip())
    if kind == "url":
        repo, revision, filename = where
        cached = _cached(repo, filename, entry, revision)
        kind, where = ("file", Path(cached)) if cached else ("missing", None)
    if kind == "file":
        return [where] if where.suffix.lower() == ".safetensors" else []
    if kind == "hub":
        index = _cached(where, "model_index.json", entry, entry.options.get("revision"))
        kind, where = ("folder", Path(index).parent) if index else ("missing", None)
    if kind != "folder":
        return []
    variant = entry.options.get("variant")
    files = []
    for component in sorted(p for p in Path(where).iterdir() if p.is_dir()):
        found = sorted(component.glob("*.safetensors"))
        chosen = [p for p in found if variant and f".{variant}." in p.name]
        if not chosen:
            chosen = [p for p in found if not re.search(r"\.(fp16|bf16|fp32)\.", p.name)] or found
        files += chosen
    return files


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
