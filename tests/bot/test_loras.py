"""<lora:name:weight> tags: read once by the core, written back the A1111 way."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from bot import images
from bot.jobs import Action, Job, Origin, Request
from bot.loras import MAX_LORAS, LoraError, find_loras, lora_hashes, short_hash, split_loras
from bot.models import Models, load_models, parse_models
from bot.requests import Defaults, RequestError, format_request, parse_request, request_from_parameters
from bot.settings import Limits


def write_safetensors(path: Path, payload: bytes = b"\x00" * 16) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(payload)]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)
    return path


@pytest.fixture
def lora_dir(tmp_path) -> Path:
    write_safetensors(tmp_path / "loras" / "pixel_art.safetensors", b"\x01" * 16)
    write_safetensors(tmp_path / "loras" / "styles" / "Ink-Wash.safetensors", b"\x02" * 16)
    (tmp_path / "loras" / "notes.txt").write_text("not a LoRA")
    return tmp_path / "loras"


@pytest.fixture
def models(lora_dir) -> Models:
    return replace(parse_models(""), loras=find_loras(lora_dir))


def parse(text: str, models: Models) -> Request:
    return parse_request(text, defaults=Defaults(), limits=Limits(), models=models)


def test_find_loras_lists_safetensors_by_name(lora_dir, tmp_path):
    assert find_loras(lora_dir) == {
        "Ink-Wash": lora_dir / "styles" / "Ink-Wash.safetensors",
        "pixel_art": lora_dir / "pixel_art.safetensors",
    }
    assert find_loras(None) == {} and find_loras(tmp_path / "nowhere") == {}
    toml = tmp_path / "models.toml"
    toml.write_text("")
    assert set(load_models(toml, lora_dir=lora_dir).loras) == {"Ink-Wash", "pixel_art"}


def test_tags_leave_the_prompt_and_become_loras(models):
    request = parse("(masterpiece:1.2), a harbor <lora:pixel_art:0.8>, <LORA:ink-wash> --seed 4", models)
    assert request.prompt == "(masterpiece:1.2), a harbor"
    assert request.loras == (("pixel_art", 0.8), ("Ink-Wash", 1.0))
    assert request.seed == 4
    assert parse("a cat", models).loras == ()
    # A tag named twice: the last weight counts.
    assert parse("<lora:pixel_art:0.2> a <lora:pixel_art:0.6>", models).loras == (("pixel_art", 0.6),)
    # A1111's separate text-encoder weight (<lora:name:unet:te>) is accepted; the first weight is used.
    assert parse("a <lora:pixel_art:0.7:0.3>", models).loras == (("pixel_art", 0.7),)


def test_unknown_names_and_bad_weights_are_refused_kindly(models):
    with pytest.raises(RequestError, match=r"There's no LoRA called 'pixelart'\. Did you mean pixel_art\?"):
        parse("a cat <lora:pixelart:1>", models)
    with pytest.raises(RequestError, match=r"no LoRA called 'zzz'\. Send /loras to see them\."):
        parse("a cat <lora:zzz:1>", models)
    with pytest.raises(RequestError, match="this server has no LoRAs"):
        parse("a cat <lora:pixel_art>", parse_models(""))
    with pytest.raises(RequestError, match=r"the weight of LoRA pixel_art must be a number, got .x."):
        parse("a cat <lora:pixel_art:x>", models)
    with pytest.raises(RequestError, match="between -2 and 2, got inf"):
        parse("a cat <lora:pixel_art:inf>", models)
    many = {f"style{n}": Path(f"/l/style{n}.safetensors") for n in range(MAX_LORAS + 1)}
    with pytest.raises(LoraError, match=f"Up to {MAX_LORAS} LoRAs"):
        split_loras(" ".join(f"<lora:style{n}>" for n in range(MAX_LORAS + 1)), many)


def test_format_request_puts_the_tags_back_and_reads_back_the_same(models):
    request = parse("a harbor <lora:pixel_art:0.8> --seed 4", models)
    text = format_request(request)
    assert text.startswith("a harbor <lora:pixel_art:0.8> ")
    assert parse(text, models) == request


def test_loras_cross_the_queue():
    request = Request(prompt="a", model="m", strength=0.5, loras=(("pixel_art", 0.8), ("ink", 1.0)))
    job = Job(id="0" * 12, action=Action.remix, request=request, image=b"", origin=Origin("cli", "u"))
    data = job.to_data()
    data["request"] = json.loads(json.dumps(data["request"]))  # lists, as any wire format gives them back
    assert Job.from_data(data).request.loras == (("pixel_art", 0.8), ("ink", 1.0))


def test_a1111_parameters_round_trip_with_weights_and_loras(models, lora_dir):
    request = parse("(masterpiece:1.2), a harbor <lora:pixel_art:0.8> <lora:Ink-Wash:0.5> --seed 7", models)
    hashes = lora_hashes(request.loras, models.loras)
    text = images.format_parameters(
        request,
        seed=7,
        width=512,
        height=512,
        steps=20,
        guidance_scale=7.0,
        sampler="Euler",
        model="fast",
        strength=0.5,
        lora_hashes=hashes,
    )
    first, settings = text.split("\n")
    assert first == "(masterpiece:1.2), a harbor <lora:pixel_art:0.8> <lora:Ink-Wash:0.5>"
    pixel, ink = hashes["pixel_art"], hashes["Ink-Wash"]
    assert settings.endswith(f'Lora hashes: "pixel_art: {pixel}, Ink-Wash: {ink}"')
    again = request_from_parameters(images.parse_parameters(text), defaults=Defaults(), models=models)
    assert again.prompt == request.prompt and again.loras == request.loras and again.seed == 7
    # Without LoRAs nothing changes.
    plain = images.format_parameters(
        replace(request, loras=()),
        seed=7,
        width=512,
        height=512,
        steps=20,
        guidance_scale=7.0,
        sampler="Euler",
        model="fast",
        strength=0.5,
    )
    assert "Lora" not in plain and "<lora" not in plain


def test_short_hash_is_the_addnet_hash_of_the_tensors(lora_dir):
    path = lora_dir / "pixel_art.safetensors"
    assert short_hash(path) == hashlib.sha256(b"\x01" * 16).hexdigest()[:12]
    assert lora_hashes((("pixel_art", 1.0), ("gone", 1.0)), {"pixel_art": path}) == {"pixel_art": short_hash(path)}
