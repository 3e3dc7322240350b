"""The ``diffusers-img2img`` model kind: Stable Diffusion 1.x/2.x/SDXL (and Turbo/LCM) through diffusers.

A source is a diffusers folder or a cached hub id (loaded with ``AutoPipelineForImage2Image``, see
``engine.kinds.pretrained``) or a single-file checkpoint (``from_single_file``, built from a
diffusers-format config: the entry's ``config`` or the default repo of the checkpoint's
architecture, read from the safetensors header). ``engine.kinds.sources`` finds the files and picks
the dtype. docs/models.md lists every option, the speed options among them.

Loading is three steps: the pipeline (``_pipeline``, with the entry's own ``vae`` if it names one),
what the entry changes in it (``_configure``: scheduler, IP-Adapter, the tiny autoencoder), then the
speed options (``_speed_up``). ``prepare`` does the last two on a pipeline built elsewhere (the
benchmarks). A pipeline's safety checker is not loaded unless asked for (``engine.kinds.pretrained``).
A run is one pipeline call whose arguments ``Img2ImgModel.call_kwargs`` builds.

The fast CPU path (BENCHMARKS.md) is two entry options: ``tiny_vae`` (a folder or cached hub id of
a diffusers ``AutoencoderTiny``, e.g. ``madebyollin/taesd``, ``madebyollin/taesdxl`` for SDXL) encodes
and decodes in place of the full VAE, and ``prompt_cache`` (default 64 prompts; 0: off) keeps the
text encoder's output for prompts seen recently, so a reroll or a variation skips the encoder.

Previews: while a single job runs, the step callback renders its latents (``engine.preview``: the
linear projection, or TAESD with ``tiny_vae``) at most every ``preview_interval`` seconds (default
``preview.INTERVAL``), never at the last step, and hands them to ``work.preview``; ``preview = false``
turns them off.

Batching: ``Img2ImgModel.run_batch`` runs several works that share a ``batch_key`` (working size,
steps, strength, guidance) as one pipeline call, with one seeded generator per output, so that every
output matches its unbatched run within 1/255 per pixel.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.jobs import Action, Progress
from bot.models import ModelEntry
from engine import preview
from engine.kinds import ip_adapter, outpaint, outputs, pretrained, prompts, sources, vae
from engine.kinds.loras import LoadedLoras
from engine.kinds.sources import MissingWeights
from engine.work import Kind, PreviewSink, Work

log = logging.getLogger(__name__)

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
_COMPILE: dict[object, str | None] = {None: None, False: None, True: "regional", "regional": "regional", "full": "full"}
VAE_TILING = 1280  # default: decode in tiles above this longest side (px)
PROMPT_CACHE = 64  # default: prompts whose embeddings a model keeps (a few MB for SD 2.x)


# --- check -----------------------------------------------------------------------------------------


def check(entry: ModelEntry) -> str | None:
    """None when ``entry`` can be loaded here; else a user-safe reason. Never touches the network."""
    try:
        source = sources.locate(entry.source.strip())
        if source.kind not in ("file", "url"):  # a folder or hub id: a whole pipeline
            return pretrained.check(entry) or _options_problem(entry)
        return pretrained.extra_problem() or _single_file_problem(entry, source) or _options_problem(entry)
    except ValueError as exc:  # an unknown architecture, a file that is not a safetensors checkpoint
        return f"misconfigured: {entry.name}: {exc}"
    except Exception:  # a broken cache or checkpoint header must not take the registry down
        log.exception("checking %s failed", entry.name)
        return f"needs weights: could not read {entry.source.strip()}"


def _single_file_problem(entry: ModelEntry, source: sources.Source) -> str | None:
    """Why a single-file source cannot load here: the file or its diffusers config missing."""
    if source.kind == "url":
        checkpoint = sources.cached_link(source, entry)
        if checkpoint is None:
            repo, filename = source.where, source.filename
            return f"needs weights: download {repo} {filename} first (hf download {repo} {filename})"
    else:
        checkpoint = source.path
        if checkpoint.suffix.lower() not in sources.SINGLE_FILE_SUFFIXES:
            return f"needs weights: {checkpoint} is not a .safetensors or .ckpt checkpoint"
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
    elif sources.locate(config).kind != "hub":
        return f"needs weights: config {config} not found"
    elif sources.cached(config, "model_index.json", entry) is None:
        return (
            f"needs weights: {checkpoint.name} needs the configs of {config}: download them first "
            f"(hf download {config} --include '*.json' '*.txt'), or {hint}"
        )
    return None


def _options_problem(entry: ModelEntry) -> str | None:
    problem = sources.dtype_problem(entry)
    if problem:
        return problem
    if entry.options.get("compile") not in _COMPILE:
        return f"misconfigured: compile = {entry.options['compile']!r} for {entry.name} (false, regional or full)"
    for option, meaning in (("vae_tiling", "a longest side in pixels, 0: never"), ("prompt_cache", "prompts, 0: off")):
        value = entry.options.get(option, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"misconfigured: {option} = {value!r} for {entry.name} ({meaning})"
    if not isinstance(entry.options.get("preview", True), bool):
        return f"misconfigured: preview = {entry.options['preview']!r} for {entry.name} (true or false)"
    every = entry.options.get("preview_interval", preview.INTERVAL)
    if isinstance(every, bool) or not isinstance(every, int | float) or every < 0:
        return f"misconfigured: preview_interval = {every!r} for {entry.name} (seconds between previews)"
    tiny = entry.options.get("tiny_vae")
    if tiny is not None:
        if not isinstance(tiny, str) or not tiny.strip():
            return f"misconfigured: tiny_vae = {tiny!r} for {entry.name} (a folder or hub id, e.g. madebyollin/taesd)"
        problem = sources.component_problem(tiny, entry, "tiny_vae")
        if problem:
            return problem
    name = entry.options.get("scheduler")
    if name and _scheduler_class(name) is None:
        return f"misconfigured: unknown scheduler {name!r} for {entry.name} in models.toml"
    return vae.check(entry) or ip_adapter.check(entry)


def _scheduler_class(name: str) -> Any:
    """The diffusers scheduler class called ``name`` (its config methods are untyped), or None."""
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


@dataclass(frozen=True)
class _TensorShape:
    shape: tuple[int, ...]


class _HeaderView(Mapping[str, _TensorShape]):
    """A safetensors checkpoint's keys and shapes, read from its header only (no tensor data)."""

    def __init__(self, path: Path):
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 1 << 28:
                raise ValueError(f"{path} is not a safetensors file")
            header = json.loads(fh.read(size))
        header.pop("__metadata__", None)
        self._shapes = {key: tuple(value["shape"]) for key, value in header.items()}

    def __getitem__(self, key: str) -> _TensorShape:
        return _TensorShape(self._shapes[key])

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
        infer: Callable[[Mapping[str, _TensorShape]], str | None] = infer_diffusers_model_type  # unannotated
        return infer(_HeaderView(checkpoint))
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


def load(entry: ModelEntry, device: str) -> Img2ImgModel:
    """Load the pipeline onto ``device`` ("cpu" or "cuda[:n]"), in float16 on CUDA unless told otherwise."""
    return prepare(_pipeline(entry, device), entry, device)


def prepare(pipe: Any, entry: ModelEntry, device: str) -> Img2ImgModel:
    """A loaded img2img pipeline as the entry wants it (``_configure``), on ``device``, sped up."""
    _configure(pipe, entry, device)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    model = Img2ImgModel(
        pipe=pipe,
        device=device,
        label=f"diffusers {type(pipe).__name__}",
        vae_tiling=int(entry.options.get("vae_tiling", VAE_TILING)),
        prompt_cache=prompts.PromptCache(int(entry.options.get("prompt_cache", PROMPT_CACHE))),
        name=entry.name,
        previews=bool(entry.options.get("preview", True)),
        preview_interval=float(entry.options.get("preview_interval", preview.INTERVAL)),
    )
    model.speed = _speed_up(model, entry)
    return model


def _pipeline(entry: ModelEntry, device: str) -> Any:
    """The entry's img2img pipeline in its dtype, on no device yet: from a single file, a folder or a hub id."""
    source = sources.locate(entry.source.strip())
    if source.kind == "missing":
        raise MissingWeights(f"needs weights: {source.where} not found")
    if source.kind in ("file", "url"):
        return _from_single_file(entry, device, source)
    import diffusers

    return pretrained.from_pretrained(entry, device, diffusers.AutoPipelineForImage2Image, **vae.kwargs(entry, device))


def _from_single_file(entry: ModelEntry, device: str, source: sources.Source) -> Any:
    import diffusers

    checkpoint = source.path if source.kind == "file" else sources.cached_link(source, entry)
    if checkpoint is None:
        raise MissingWeights(f"needs weights: download {source.where} {source.filename} first")
    offline = sources.offline(entry)
    model_type = _model_type(entry, checkpoint)
    xl = model_type in _XL_TYPES if model_type else "xl" in checkpoint.name.lower()
    cls = diffusers.StableDiffusionXLImg2ImgPipeline if xl else diffusers.StableDiffusionImg2ImgPipeline
    # A pickled .ckpt without options: diffusers infers its configs from the loaded weights, unless
    # offline, where the configs check() looked for are used (diffusers would try to download).
    known = model_type or offline or entry.options.get("config")
    config = _single_file_config(entry, checkpoint) if known else None
    return cls.from_single_file(
        str(checkpoint),
        config=_local_config(entry, config, offline),
        local_files_only=offline,
        **{sources.dtype_kwarg(): sources.torch_dtype(entry, device)},
        **vae.kwargs(entry, device),
    )


def _configure(pipe: Any, entry: ModelEntry, device: str) -> None:
    """What the entry changes in a loaded pipeline: another scheduler, an IP-Adapter, the tiny autoencoder."""
    name = entry.options.get("scheduler")
    overrides = dict(entry.options.get("scheduler_config") or {})
    if name or overrides:
        cls = _scheduler_class(name) if name else type(pipe.scheduler)
        if cls is None:
            raise ValueError(f"unknown scheduler {name!r} for {entry.name}")
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    ip_adapter.attach(pipe, entry)
    if entry.options.get("tiny_vae"):
        import diffusers

        pipe.vae = sources.from_pretrained_component(
            diffusers.AutoencoderTiny, entry.options["tiny_vae"], entry, device
        )


Images = Sequence[Image.Image]


@dataclass
class Img2ImgModel:
    pipe: Any  # a diffusers StableDiffusion(XL)Img2ImgPipeline
    device: str
    label: str
    vae_tiling: int = VAE_TILING  # decode in tiles above this longest side (px); 0: never
    speed: dict[str, Any] = field(default_factory=dict)  # the speed options in effect
    loras: LoadedLoras = field(default_factory=LoadedLoras)  # resident LoRAs, the active ones
    prompt_cache: prompts.PromptCache = field(default_factory=lambda: prompts.PromptCache(PROMPT_CACHE))
    name: str = ""  # the registry entry's: part of every prompt-cache key
    previews: bool = True  # render previews for works that have a ``preview`` sink
    preview_interval: float = preview.INTERVAL  # seconds between two previews of one job, at least
    preview_cost: preview.RenderCost = field(default_factory=preview.RenderCost)  # the last render's, for the next job

    @property
    def tiny_vae(self) -> bool:
        """Whether the pipeline's autoencoder is a TAESD (``AutoencoderTiny``)."""
        return type(getattr(self.pipe, "vae", None)).__name__ == "AutoencoderTiny"

    def batch_key(self, work: Work) -> Hashable:
        """Works with equal keys can run as one batch: same working size, steps, strength, guidance, LoRAs."""
        steps, strength, guidance = _call_settings(work)
        alone = id(work) if work.action is Action.outpaint else None  # an outpaint runs alone (run)
        return (alone, work.image.size, steps, strength, guidance, ip_adapter.batch_key(work), work.request.loras)

    def run(self, work: Work, progress: Progress) -> Images:
        if work.action is Action.outpaint:  # zoom out / pan: the border redrawn by the inpainting twin
            self.loras.activate(self.pipe, work)
            steps, _, guidance = _call_settings(work)
            return outpaint.redraw(self.pipe, work, progress, steps=steps, guidance=guidance)
        outcome = self.run_batch([work], progress)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(self, works: Sequence[Work], progress: Progress) -> list[Images | Exception]:
        """Works sharing one ``batch_key`` as one pipeline call: per work, its images or its error.

        Every output row has its own generator seeded with its seed (the VAE encoding's sample and
        the noise are drawn per row), so a work's pixels do not depend on what it was batched with.
        An error that concerns one work (a blank image) is that work's result; anything else raises.
        """
        import torch

        if not any(work.seeds for work in works):
            return [[] for _ in works]
        self._set_tiling(works[0].image.size)
        self.loras.activate(self.pipe, works[0])  # one batch key: the same LoRAs for every work
        with torch.inference_mode():
            result = self.pipe(**self.call_kwargs(works, progress))
        return self._outcomes(works, result)

    def call_kwargs(self, works: Sequence[Work], progress: Progress) -> dict[str, Any]:
        """The pipeline call's arguments for works that share one ``batch_key``: a row per output."""
        rows = [(work, seed) for work in works for seed in work.seeds]
        steps, strength, guidance = _call_settings(works[0])
        negatives = [work.request.negative_prompt for work, _ in rows]
        texts = [work.request.prompt for work, _ in rows]
        # everything besides the text that changes the embeddings: this model and its active LoRAs
        context = (self.name, self.loras.active)
        return dict(
            **prompts.call_kwargs(self.pipe, texts, negatives, self.prompt_cache, context),
            # one source for one work (the pipeline repeats it); else one per row
            image=works[0].image if len(works) == 1 else [work.image for work, _ in rows],
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=pretrained.generators(self.device, [seed for _, seed in rows]),
            output_type="np",  # floats: NaNs are still visible; converted to PIL as "pil" would
            callback_on_step_end=_on_step_end(progress, min(int(steps * strength), steps), self._previews(works)),
            **ip_adapter.call_kwargs(self.pipe, list(works)),
        )

    def _previews(self, works: Sequence[Work]) -> list[tuple[int, PreviewSink, preview.LatentPreview]]:
        """(latent row, sink, throttled renderer) for each work that wants previews: its first output's row."""
        if not self.previews:
            return []
        decoder = functools.partial(preview.tiny_vae_rgb, self.pipe.vae) if self.tiny_vae else None
        found, row = [], 0
        for work in works:
            if work.preview is not None and work.seeds:
                render = preview.LatentPreview(
                    preview.family(self.pipe), self.preview_interval, decoder=decoder, cost=self.preview_cost
                )
                found.append((row, work.preview, render))
            row += len(work.seeds)
        return found

    def _outcomes(self, works: Sequence[Work], result: Any) -> list[Images | Exception]:
        """The pipeline's output rows, split back into each work's images (or its blank-image error)."""
        arrays = result.images
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * len(arrays)
        found: list[Images | Exception] = []
        start = 0
        for work in works:
            end = start + len(work.seeds)
            found.append(outputs.images(arrays[start:end], flagged[start:end], self.label))
            start = end
        return found

    def _set_tiling(self, size: tuple[int, int]) -> None:
        vae = getattr(self.pipe, "vae", None)
        if vae is None or not hasattr(vae, "use_tiling"):
            return
        if self.vae_tiling and max(size) > self.vae_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()


Previews = Sequence[tuple[int, PreviewSink, "preview.LatentPreview"]]


def _on_step_end(
    progress: Progress, expected: int, previews: Previews = ()
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """The pipeline's ``callback_on_step_end``: reports every step (and so stops a cancelled job), and
    hands each watched work a preview of its latents when its renderer's interval has passed."""
    broken: list[bool] = []

    def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        # num_timesteps is the loop's real length (set before the first step): int(steps * strength)
        # for first-order schedulers, more for PNDM (+1) or second-order ones (Heun, DPM2).
        total = getattr(pipe, "num_timesteps", None) or expected
        step = min(i + 1, total)
        progress(step, total)  # raises JobCancelled: it propagates out of the pipeline
        latents = kwargs.get("latents")
        if step < total and latents is not None and previews and not broken:  # the last step: the result follows
            try:
                for row, sink, render in previews:
                    data = render(latents[row : row + 1])
                    if data:
                        sink(step, total, data)
            except Exception:  # noqa: BLE001 - a preview never fails a job
                log.exception("rendering a preview failed; no more previews for this run")
                broken.append(True)
        return kwargs

    return on_step_end


def _call_settings(work: Work) -> tuple[int, float, float]:
    """(num_inference_steps, strength, guidance_scale) of the pipeline call for ``work``."""
    request, entry = work.request, work.entry
    steps = request.num_inference_steps or entry.num_inference_steps
    steps, strength = denoising_schedule(steps, request.strength)
    guidance = entry.guidance_scale if request.guidance_scale is None else request.guidance_scale
    return steps, strength, float(guidance)


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


# --- speed -----------------------------------------------------------------------------------------


def _speed_up(model: Img2ImgModel, entry: ModelEntry) -> dict[str, Any]:
    """Apply the entry's speed options to a loaded pipeline; returns what is in effect."""
    import torch

    pipe, options = model.pipe, entry.options
    cuda = model.device.startswith("cuda")
    speed: dict[str, Any] = {"dtype": str(pipe.unet.dtype).removeprefix("torch.")}
    if options.get("sdpa", True):
        speed["sdpa"] = _use_sdpa(pipe)
    # NHWC: on CUDA, and for bfloat16 on a CPU (oneDNN's AMX kernels want it: TAESD at 512² encodes
    # and decodes ~4x faster than bfloat16 NCHW; float32 gains nothing there, BENCHMARKS.md)
    if options.get("channels_last", cuda or pipe.unet.dtype == torch.bfloat16):
        for module in (pipe.unet, getattr(pipe, "vae", None)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
        speed["channels_last"] = True
    if options.get("vae_slicing", True) and hasattr(pipe.vae, "use_slicing"):
        pipe.vae.enable_slicing()
        speed["vae_slicing"] = True
    if options.get("host_sigmas", True):
        _keep_sigmas_on_host(pipe.scheduler)
        speed["host_sigmas"] = True
    if "cudnn_benchmark" in options:
        log.warning("%s: cudnn_benchmark is an engine-wide setting now, not a model's (docs/models.md)", entry.name)
    speed["vae_tiling"] = model.vae_tiling
    how = _COMPILE.get(options.get("compile"))
    if how:
        speed["compile"] = _compile(model, entry, how)
    log.info("%s: %s", entry.name, ", ".join(f"{k}={v}" for k, v in speed.items()))
    return speed


def _use_sdpa(pipe: Any) -> bool:
    """Make every plain attention processor of the UNet and VAE the SDPA one; True when all are SDPA."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    sdpa: Callable[[], Any] = AttnProcessor2_0  # unannotated
    every = True
    for module in (pipe.unet, getattr(pipe, "vae", None)):
        processors = getattr(module, "attn_processors", None)
        if module is None or not processors:
            continue
        if any(type(p) is AttnProcessor for p in processors.values()):
            module.set_attn_processor(
                {name: sdpa() if type(p) is AttnProcessor else p for name, p in processors.items()}
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
        sigmas: Any = getattr(scheduler, "sigmas", None)
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
    model.prompt_cache.clear()
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
    element = sources.torch_dtype(entry, device).itemsize
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
    source = sources.locate(entry.source.strip())
    if source.kind == "url":
        checkpoint = sources.cached_link(source, entry)
        return _weight_files_of(checkpoint) if checkpoint else []
    if source.kind == "file":
        return _weight_files_of(source.path)
    if source.kind == "hub":
        index = sources.cached(source.where, "model_index.json", entry, entry.options.get("revision"))
        return _pipeline_weight_files(Path(index).parent, entry) if index else []
    if source.kind == "folder":
        return _pipeline_weight_files(source.path, entry)
    return []


def _weight_files_of(checkpoint: Path) -> list[Path]:
    return [checkpoint] if checkpoint.suffix.lower() == ".safetensors" else []


def _pipeline_weight_files(folder: Path, entry: ModelEntry) -> list[Path]:
    """A pipeline folder's safetensors, one set per component: the entry's ``variant`` if it has one."""
    variant = entry.options.get("variant")
    files = []
    for component in sorted(p for p in folder.iterdir() if p.is_dir()):
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
    index = sources.cached(config, "model_index.json", entry)
    if index is not None:
        return str(Path(index).parent)  # the cached snapshot: model_index.json and the component configs
    if offline:
        raise MissingWeights(f"needs weights: download the configs of {config} first")
    return config


KIND = Kind(check=check, load=load, expected_nbytes=expected_nbytes, batches=True)
