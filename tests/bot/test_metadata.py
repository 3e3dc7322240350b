"""bot.metadata: the settings carried by images from AUTOMATIC1111, ComfyUI, NovelAI, InvokeAI and Fooocus,
each fixture written the way that tool writes it, read into the Request a remix with no text uses."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from bot import images, metadata
from bot.jobs import Request
from bot.loras import find_loras, lora_hashes
from bot.models import Models, parse_models
from bot.requests import Defaults, parse_request, request_from_parameters
from bot.settings import Limits
from tests.fixtures.hostile import quadratic_line_png, text_bomb_png

MODELS = parse_models("""
[models.fast]
kind = "diffusers-img2img"
strength = 0.5
""")
A1111_TEXT = (
    "a (red:1.3) fox in [fog], BREAK snowy forest\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 24, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, "
    "Model hash: abc123, Model: fast, Denoising strength: 0.45, Version: v1.10.1"
)


def png(info: dict[str, str] | None = None, *, after: dict[str, str] | None = None, itxt: bool = False) -> bytes:
    """A PNG with ``info`` as text chunks before the pixels and ``after`` as chunks after them (some tools
    write their text at the end of the file)."""
    pnginfo = PngImagePlugin.PngInfo()
    for key, value in (info or {}).items():
        pnginfo.add_itxt(key, value) if itxt else pnginfo.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(buffer, format="PNG", pnginfo=pnginfo)
    data = buffer.getvalue()
    if after:
        chunks = b""
        for key, value in after.items():
            body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
            chunks += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
        data = data[:-12] + chunks + data[-12:]  # IEND is the last 12 bytes
    return data


def with_user_comment(text: str, fmt: str) -> bytes:
    """A JPEG or WebP with ``text`` as its EXIF UserComment, as A1111 and Fooocus save it (UTF-16 BE)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def request_of(data: bytes, models: Models = MODELS) -> Request:
    found = metadata.read_generation(data)
    assert found is not None and found.usable
    return request_from_parameters(found.settings, defaults=Defaults(), models=models)


A1111_REQUEST = dict(
    prompt="a (red:1.3) fox in [fog], BREAK snowy forest",
    negative_prompt="blurry, lowres",
    seed=1234,
    num_inference_steps=24,
    guidance_scale=6.5,
    strength=0.45,
    model="fast",
    size=768,
)


@pytest.mark.parametrize(
    "data",
    [
        png({"parameters": A1111_TEXT}),
        png({"parameters": A1111_TEXT}, itxt=True),
        png(after={"parameters": A1111_TEXT}),
        with_user_comment(A1111_TEXT, "JPEG"),
        with_user_comment(A1111_TEXT, "WEBP"),
    ],
    ids=["png-text", "png-itxt", "png-text-after-the-pixels", "jpeg-exif", "webp-exif"],
)
def test_automatic1111_in_every_place_it_writes(data: bytes) -> None:
    assert metadata.read_generation(data).tool == "AUTOMATIC1111"
    request = request_of(data)
    assert {key: getattr(request, key) for key in A1111_REQUEST} == A1111_REQUEST


COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 987654321,
            "steps": 18,
            "cfg": 5.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.6,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["10", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk, oil painting", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}},
    "11": {"class_type": "LoadImage", "inputs": {"image": "harbor.png"}},
}
# The UI graph ComfyUI saves beside it: links are [id, from node, from slot, to node, to slot, type].
COMFY_WORKFLOW = {
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 6, 0, 3, 1, "CONDITIONING"],
        [3, 7, 0, 3, 2, "CONDITIONING"],
        [4, 4, 1, 6, 0, "CLIP"],
        [5, 4, 1, 7, 0, "CLIP"],
        [6, 3, 0, 8, 0, "LATENT"],
        [7, 8, 0, 9, 0, "IMAGE"],
        [8, 10, 0, 3, 3, "LATENT"],
    ],
    "nodes": [],
    "version": 0.4,
}


@pytest.mark.parametrize("workflow", [True, False], ids=["prompt-and-workflow", "prompt-only"])
def test_comfyui(workflow: bool) -> None:
    texts = {"prompt": json.dumps(COMFY_PROMPT)}
    if workflow:
        texts["workflow"] = json.dumps(COMFY_WORKFLOW)
    data = png(texts)
    assert metadata.read_generation(data).tool == "ComfyUI"
    request = request_of(data)
    assert request.prompt == "a lighthouse at dusk, oil painting"
    assert request.negative_prompt == "text, watermark"
    assert (request.seed, request.num_inference_steps, request.guidance_scale) == (987654321, 18, 5.5)
    assert request.strength == 0.6 and request.model == "classic", "an unknown checkpoint: the default model"


def test_comfyui_prompt_behind_another_node_is_found_along_the_links() -> None:
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["3"]["inputs"]["positive"] = ["12", 0]
    prompt["12"] = {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["6", 0], "strength": 1.0}}
    workflow = json.loads(json.dumps(COMFY_WORKFLOW))
    workflow["links"] = [link for link in workflow["links"] if link[0] != 2]
    workflow["links"] += [[9, 6, 0, 12, 0, "CONDITIONING"], [10, 12, 0, 3, 1, "CONDITIONING"]]
    request = request_of(png({"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}))
    assert request.prompt == "a lighthouse at dusk, oil painting" and request.negative_prompt == "text, watermark"


def chained_samplers(count: int) -> bytes:
    """A hostile ComfyUI graph: ``count`` samplers, each one's prompt the next sampler."""
    prompt = {
        str(i): {
            "class_type": "KSampler",
            "inputs": {"seed": 1, "steps": 2, "cfg": 3, "sampler_name": "e", "positive": [str(i + 1), 0]},
        }
        for i in range(count)
    }
    workflow = {"links": [[i, i + 1, 0, i, 1, "CONDITIONING"] for i in range(count)]}
    return png({"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)})


def test_comfyui_text_to_image_keeps_the_models_strength() -> None:
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["3"]["inputs"]["denoise"] = 1.0
    request = request_of(png({"prompt": json.dumps(prompt), "workflow": json.dumps(COMFY_WORKFLOW)}))
    assert request.strength == MODELS["classic"].strength


def test_novelai() -> None:
    comment = {
        "prompt": "1girl, cherry blossoms, {best quality}",
        "steps": 28,
        "height": 832,
        "width": 1216,
        "scale": 5.0,
        "uncond_scale": 1.0,
        "cfg_rescale": 0.0,
        "seed": 3141592,
        "n_samples": 1,
        "noise_schedule": "native",
        "strength": 0.7,
        "noise": 0.2,
        "sampler": "k_euler_ancestral",
        "uc": "lowres, bad anatomy",
    }
    data = png(
        {
            "Title": "AI generated image",
            "Description": "1girl, cherry blossoms, {best quality}",
            "Software": "NovelAI",
            "Source": "Stable Diffusion XL C1E1DE52",
            "Comment": json.dumps(comment),
        }
    )
    assert metadata.read_generation(data).tool == "NovelAI"
    request = request_of(data)
    assert request.prompt == "1girl, cherry blossoms, {best quality}"
    assert request.negative_prompt == "lowres, bad anatomy"
    assert (request.seed, request.num_inference_steps, request.guidance_scale) == (3141592, 28, 5.0)
    assert request.strength == 0.7 and request.size == 1216


def test_invokeai() -> None:
    meta = {
        "generation_mode": "sd1_img2img",
        "positive_prompt": "a cozy cabin in the snow, warm light",
        "negative_prompt": "ugly, blurry",
        "width": 512,
        "height": 512,
        "seed": 4242,
        "rand_device": "cpu",
        "cfg_scale": 7.5,
        "steps": 30,
        "scheduler": "euler",
        "strength": 0.55,
        "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
    }
    data = png({"invokeai_metadata": json.dumps(meta)})
    assert metadata.read_generation(data).tool == "InvokeAI"
    request = request_of(data)
    assert request.prompt == "a cozy cabin in the snow, warm light" and request.negative_prompt == "ugly, blurry"
    assert (request.seed, request.num_inference_steps, request.guidance_scale, request.strength) == (
        4242,
        30,
        7.5,
        0.55,
    )


FOOOCUS = {
    "prompt": "a red panda astronaut, studio light",
    "negative_prompt": "cartoon, deformed",
    "styles": "['Fooocus V2', 'Fooocus Enhance']",
    "performance": "Speed",
    "steps": 30,
    "resolution": "(1152, 896)",
    "guidance_scale": 4.0,
    "sharpness": 2.0,
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "base_model_hash": "aeb7e9e689",
    "refiner_model": "None",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "8675309",
    "version": "Fooocus v2.5.5",
}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fooocus(fmt: str) -> None:
    text = json.dumps(FOOOCUS)
    data = png({"parameters": text, "fooocus_scheme": "fooocus"}) if fmt == "PNG" else with_user_comment(text, fmt)
    assert metadata.read_generation(data).tool == "Fooocus"
    request = request_of(data)
    assert request.prompt == "a red panda astronaut, studio light" and request.negative_prompt == "cartoon, deformed"
    assert (request.seed, request.num_inference_steps, request.guidance_scale) == (8675309, 30, 4.0)


def test_nothing_usable_is_none_or_unusable(images_dir: Path) -> None:
    assert metadata.read_generation(images.encode_png(Image.new("RGB", (32, 32)))) is None
    assert metadata.read_generation((images_dir / "rocket.jpg").read_bytes()) is None
    assert metadata.read_generation(b"") is None and metadata.read_generation(b"\x89PNG\r\n\x1a\n junk") is None
    broken = metadata.read_generation(png({"prompt": "{not json", "workflow": "[]"}))
    assert broken is None or not broken.usable
    settings_only = metadata.read_generation(png({"parameters": "Steps: 20, Sampler: Euler, Seed: 1"}))
    assert settings_only is not None and not settings_only.usable


def test_hostile_texts_are_bounded_and_fast() -> None:
    started = time.perf_counter()
    bomb = metadata.read_generation(text_bomb_png())
    line = metadata.read_generation(quadratic_line_png())
    assert metadata.read_generation(chained_samplers(1200)) is not None, "read without its links: linear"
    assert metadata.read_generation(chained_samplers(metadata.MAX_LINKED_NODES)) is not None
    huge_graph = png({"prompt": json.dumps({str(i): {"class_type": "X", "inputs": {}} for i in range(40_000)})})
    assert metadata.read_generation(huge_graph) is None, "a JSON value over the cap is skipped whole"
    assert time.perf_counter() - started < 5, "linear reads, not hours"
    assert bomb is not None and len(bomb.settings["prompt"]) <= metadata.MAX_TEXT
    assert line is not None and line.usable
    assert sum(len(v) for v in metadata.embedded_texts(text_bomb_png()).values()) <= metadata.MAX_TEXT


def test_our_own_png_with_weights_and_loras_round_trips(tmp_path: Path) -> None:
    from tests.bot.test_loras import write_safetensors

    write_safetensors(tmp_path / "pixel_art.safetensors", b"\x01" * 16)
    models = replace(MODELS, loras=find_loras(tmp_path))
    request = parse_request(
        "(masterpiece:1.3), a harbor at [dawn] <lora:pixel_art:0.8> --no blurry --seed 77 --steps 12 --cfg 6"
        " --model fast --strength 0.4",
        defaults=Defaults(),
        limits=Limits(),
        models=models,
    )
    hashes = lora_hashes(request.loras, models.loras)
    text = images.format_parameters(
        request,
        seed=77,
        width=512,
        height=384,
        steps=12,
        guidance_scale=6.0,
        sampler="Euler",
        model="fast",
        strength=0.4,
        lora_hashes=hashes,
    )
    assert f'Lora hashes: "pixel_art: {hashes["pixel_art"]}"' in text
    data = images.encode_png(Image.new("RGB", (512, 384)), text)
    again = request_of(data, models)
    assert again == replace(request, size=512), "the same request (Size records the longest side)"
    assert again.prompt == "(masterpiece:1.3), a harbor at [dawn]" and again.loras == (("pixel_art", 0.8),)
