"""Styles: the shipped presets, ``--style`` applied once when the request is built, a chat's own styles
(``/server style add|remove``, kept in SQLite), the style-transfer model's built-in names, and what
/styles, /loras, /info and /help say."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from adapters.cli import build_service, close_service
from bot import presenter
from bot.admin import STYLE_USAGE, server_command
from bot.flags import help_text
from bot.history import MIGRATIONS, JobRecord
from bot.jobs import Action, Origin, Request, Status
from bot.loras import find_loras, lora_base
from bot.models import SHIPPED_STYLES, Models, parse_models
from bot.requests import Defaults, RequestError, format_request, parse_request
from bot.service import ASK_FOR_PROMPT, Refusal
from bot.settings import Limits
from bot.styles import TRANSFER_STYLES, Style, StyleError, load_styles, make_style, parse_styles

SHIPPED = load_styles(SHIPPED_STYLES)
MODELS = replace(
    parse_models("""
[models.fast]
kind = "diffusers-img2img"
strength = 0.5

[models.style]
kind = "style-transfer"
strength = 1.0
"""),
    styles=SHIPPED,
)
ADMIN = Origin(platform="discord", user_id="5", chat_id="77", guild_id="900", user_name="Mod")
MEMBER = Origin(platform="discord", user_id="6", chat_id="78", guild_id="900", user_name="Pat")
ELSEWHERE = Origin(platform="discord", user_id="6", chat_id="99", guild_id="901", user_name="Pat")
PRIVATE = Origin(platform="telegram", user_id="6", chat_id="6", user_name="Pat", private=True)


def parse(text: str, models: Models = MODELS, defaults: Defaults = Defaults()) -> Request:
    return parse_request(text, defaults=defaults, limits=Limits(), models=models)


def test_the_shipped_styles_are_good_presets() -> None:
    assert 6 <= len(SHIPPED) <= 10
    assert {"cinematic", "watercolor", "anime", "pixel-art", "photo", "line-art"} <= set(SHIPPED)
    for style in SHIPPED.values():
        assert "{prompt}" in style.prompt and style.negative_prompt and style.description
        assert style.strength is not None and 0 < style.strength < 1


def test_a_style_fills_the_request_once() -> None:
    request = parse("a fox in the snow --style watercolor --no people")
    watercolor = SHIPPED["watercolor"]
    assert request.prompt == watercolor.prompt.replace("{prompt}", "a fox in the snow")
    assert request.negative_prompt == f"{watercolor.negative_prompt}, people", "the style's, then the user's"
    assert request.strength == watercolor.strength and request.style == "watercolor"
    assert parse("a fox --style Watercolor --strength 0.2").strength == 0.2, "the user's own flags win"
    assert "{prompt}" not in parse("--style watercolor").prompt and parse("--style watercolor").style == "watercolor"


def test_a_repeat_writes_what_the_style_set_not_the_style() -> None:
    request = parse("a fox --style cinematic --seed 3")
    text = format_request(request)
    assert "--style" not in text and "cinematic film still of a fox" in text
    assert parse(text) == replace(request, style=""), "the repeat works with the style gone"


def test_a_styles_model_and_loras(tmp_path: Path) -> None:
    from tests.bot.test_loras import write_safetensors

    write_safetensors(tmp_path / "ink.safetensors")
    style = make_style("ink", {"prompt": "{prompt}, ink", "loras": {"ink": 0.6}, "model": "fast", "strength": 0.3})
    models = replace(MODELS, loras=find_loras(tmp_path), styles={**MODELS.styles, "ink": style})
    request = parse("a cat --style ink", models)
    assert (request.model, request.strength, request.loras, request.prompt) == (
        "fast",
        0.3,
        (("ink", 0.6),),
        "a cat, ink",
    )
    own = parse("a cat <lora:ink:0.9> --style ink --model classic", models)
    assert own.loras == (("ink", 0.9),) and own.model == "classic", "the prompt's own tag and --model win"
    gone = replace(models, styles={"ink": replace(style, model="not-here")})
    assert parse("a cat --style ink", gone).model == "classic", "a style's model that isn't here is left out"


def test_the_style_models_own_styles_are_style_names() -> None:
    request = parse("my dog --style starry")
    assert request.model == "style" and "starry" in request.prompt.split() and request.style == "starry"
    assert parse('my dog --style "stained glass"').prompt.startswith("stained-glass ")
    with pytest.raises(RequestError, match="style-transfer model; leave out --model"):
        parse("my dog --style starry --model fast")
    without = replace(MODELS, entries={k: v for k, v in MODELS.entries.items() if k != "style"})
    with pytest.raises(RequestError, match="I don't know the style 'starry'"):
        parse("my dog --style starry", without)


def test_an_unknown_style_is_a_friendly_suggestion() -> None:
    with pytest.raises(RequestError, match=r"I don't know the style 'cinematc'\. Did you mean cinematic\? Try /styles"):
        parse("a fox --style cinematc")


def test_the_transfer_names_are_the_engines() -> None:
    from engine.kinds.style import STYLES

    assert TRANSFER_STYLES == tuple(STYLES)


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("x", {"prompt": "no placeholder"}, "needs {prompt}"),
        ("has space", {"prompt": "{prompt}"}, "letters, digits"),
        ("x", {"prompt": "{prompt}", "strength": 3}, "between 0 and 1"),
        ("x", {"prompt": "{prompt}" + "a" * 600}, "up to 500"),
        ("x", {"prompt": "{prompt}", "loras": {"a": 9}}, "LoRA's weight"),
    ],
)
def test_bad_styles_are_refused(name: str, data: dict, why: str) -> None:
    with pytest.raises(StyleError, match=why):
        make_style(name, data)


def test_a_bad_styles_toml_names_the_style() -> None:
    with pytest.raises(ValueError, match="style 'broken'"):
        parse_styles('[styles.broken]\nprompt = "no placeholder"\n')


def test_apply_leaves_no_stray_comma() -> None:
    assert Style("s", "{prompt}, oil painting").apply("") == "oil painting"
    assert Style("s", "photo of {prompt}").apply("  a cat ") == "photo of a cat"


@pytest.fixture
async def service(settings):
    service = await build_service(settings)
    yield service
    await close_service(service)


def picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_admins_add_styles_for_their_server_only(service) -> None:
    assert MIGRATIONS[4].strip().startswith("CREATE TABLE styles")
    said = await server_command(
        service, ADMIN, "style add Neon neon-lit {prompt}, cyberpunk --no daylight --strength 0.4"
    )
    assert "Saved the style neon" in said and "--style neon" in said
    ticket = await service.submit(MEMBER, "a street --style neon", picture())
    request = ticket.job.request
    assert (request.prompt, request.negative_prompt, request.strength) == (
        "neon-lit a street, cyberpunk",
        "daylight",
        0.4,
    )
    assert request.style == "neon"
    with pytest.raises(Refusal, match="I don't know the style 'neon'"):
        await service.submit(ELSEWHERE, "a street --style neon", picture())
    listing = await service.styles(MEMBER)
    assert [s.name for s in listing.own] == ["neon"] and "cinematic" in [s.name for s in listing.shared]
    assert listing.transfer, "the registry has the style-transfer model"
    assert not (await service.styles(ELSEWHERE)).own

    await server_command(service, ADMIN, "style add cinematic moody still of {prompt}")  # hides the global one here
    listing = await service.styles(MEMBER)
    assert "cinematic" not in [s.name for s in listing.shared] and [s.name for s in listing.own] == [
        "cinematic",
        "neon",
    ]
    assert (
        await service.submit(MEMBER, "a fox --style cinematic", picture())
    ).job.request.prompt == "moody still of a fox"

    assert "Removed the style neon" in await server_command(service, ADMIN, "style remove NEON")
    with pytest.raises(Refusal, match="no style of its own called 'neon'"):
        await server_command(service, ADMIN, "style remove neon")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("style add x plain words", "needs {prompt}"),
        ("style add x {prompt} --seed 3", "not --seed"),
        ("style add x {prompt} --model nope", "no model called 'nope'"),
        ("style add x {prompt} <lora:nope:1>", "no LoRA called 'nope'"),
        ("style add bad/name {prompt}", "letters, digits"),
        ("style add x", STYLE_USAGE[:20]),
        ("style frob", STYLE_USAGE[:20]),
    ],
)
async def test_bad_style_lines_say_why(service, line: str, why: str) -> None:
    with pytest.raises(Refusal, match=why.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        await server_command(service, ADMIN, line)


async def test_private_chats_have_no_styles_of_their_own(service) -> None:
    with pytest.raises(Refusal, match="for servers and groups"):
        await service.add_style(PRIVATE, "x", "{prompt}")
    assert (await service.styles(PRIVATE)).own == ()


async def test_no_text_and_nothing_carried_asks_for_a_prompt(service) -> None:
    with pytest.raises(Refusal) as asked:
        await service.submit(PRIVATE, "  ", picture())
    assert str(asked.value) == ASK_FOR_PROMPT and "/styles" in ASK_FOR_PROMPT
    flags_only = await service.submit(PRIVATE, "--strength 0.3", picture())
    assert flags_only.job.request.prompt == "" and flags_only.job.request.strength == 0.3


async def test_a_comfyui_png_sent_with_no_text_is_remixed_with_its_prompt(service) -> None:
    from tests.bot.test_metadata import COMFY_PROMPT, COMFY_WORKFLOW, png

    data = png({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)})
    request = (await service.submit(PRIVATE, "", data)).job.request
    assert request.prompt == "a lighthouse at dusk, oil painting" and request.seed == 987654321
    assert request.strength == 0.6 and request.num_inference_steps == 18
    offered = await service.submit(PRIVATE, "make it winter", data)
    assert "a lighthouse at dusk" in offered.offer and "--seed 987654321" in offered.offer


def lora_file(path: Path, *, width: int | None = None, xl: bool = False, meta: dict | None = None) -> Path:
    tensors: dict = {}
    if width is not None:
        key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
        tensors[key] = {"dtype": "F16", "shape": [4, width], "data_offsets": [0, 8]}
    if xl:
        tensors["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = {
            "dtype": "F16",
            "shape": [4, 4],
            "data_offsets": [0, 8],
        }
    if meta:
        tensors["__metadata__"] = meta
    header = json.dumps(tensors).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    return path


def test_a_loras_base_model_comes_from_its_header(tmp_path: Path) -> None:
    assert lora_base(lora_file(tmp_path / "a.safetensors", width=768)) == "SD 1.x"
    assert lora_base(lora_file(tmp_path / "b.safetensors", width=1024)) == "SD 2.x"
    assert lora_base(lora_file(tmp_path / "c.safetensors", width=2048)) == "SDXL"
    assert lora_base(lora_file(tmp_path / "d.safetensors", xl=True)) == "SDXL"
    assert lora_base(lora_file(tmp_path / "e.safetensors", meta={"ss_base_model_version": "sdxl_base_v1-0"})) == "SDXL"
    assert lora_base(lora_file(tmp_path / "f.safetensors")) == "unknown"
    (tmp_path / "g.safetensors").write_bytes(b"\xff" * 64)
    assert lora_base(tmp_path / "g.safetensors") == "unreadable"


async def test_loras_lists_names_and_base_models(settings, tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    folder.mkdir()
    lora_file(folder / "pixel_art.safetensors", width=768)
    lora_file(folder / "Film-Grain.safetensors", width=2048)
    service = await build_service(replace(settings, lora_dir=folder))
    try:
        found = await service.loras()
    finally:
        await close_service(service)
    assert found == [("Film-Grain", "SDXL"), ("pixel_art", "SD 1.x")]
    text = presenter.loras_text(found, presenter.Plain(), 4000)
    assert "pixel_art · SD 1.x" in text and "<lora:NAME:0.8>" in text
    assert "No LoRAs" in presenter.loras_text([], presenter.Plain(), 4000)


def test_styles_text_lists_every_kind_and_fits() -> None:
    from bot.styles import StyleList

    own = (make_style("neon", {"prompt": "neon {prompt}"}, scope="discord:1"),)
    listing = StyleList(shared=tuple(SHIPPED.values()), own=own, transfer=True)
    text = presenter.styles_text(listing, presenter.Plain(), 4000)
    assert all(name in text for name in SHIPPED) and "This chat's own:" in text and "neon" in text
    assert "starry" in text and "/server style add" in text
    assert len(presenter.styles_text(listing, presenter.Plain(), 300)) <= 300


def record(request: Request) -> JobRecord:
    origin = Origin(platform="console", user_id="u", chat_id="c")
    return JobRecord(
        id="0123456789ab",
        user_id=1,
        action=Action.remix,
        request=request,
        origin=origin,
        group="classic",
        status=Status.done,
        parent_job=None,
        parent_output=None,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error="",
        engine="",
        note="",
        status_message="",
        outputs=(),
    )


def test_info_shows_how_a_prompt_was_read_and_its_style() -> None:
    styled = parse("a (red:1.3) fox BREAK snow --style photo")
    shown = presenter.info(record(styled), presenter.Plain(), 4000)
    assert "Read as: professional photograph of a (red:1.3) fox BREAK snow, natural light" in shown
    assert "Style: photo" in shown
    plain = presenter.info(record(parse("a red fox")), presenter.Plain(), 4000)
    assert "Read as" not in plain and "Style:" not in plain


def test_help_shows_the_syntax_with_examples() -> None:
    text = help_text(Limits())
    for example in ("(word:1.3)", "[word]", "BREAK", "<lora:name:0.8>", "--style watercolor", "/styles", "ComfyUI"):
        assert example in text


async def test_the_console_lists_styles_and_loras_and_shows_how_a_prompt_was_read(settings, tmp_path, images_dir):
    from adapters.console import Console

    folder = tmp_path / "loras"
    folder.mkdir()
    lora_file(folder / "pixel_art.safetensors", width=768)
    service = await build_service(replace(settings, lora_dir=folder))
    try:
        photo = images_dir / "coffee.png"
        lines = f"styles\nloras\n{photo} a ((red)) fox BREAK snow --style vintage --seed 1\ninfo\n"
        out = io.StringIO()
        await Console(service, user="ann", stdin=io.StringIO(lines), stdout=out).run()
    finally:
        await close_service(service)
    text = out.getvalue()
    assert "Styles — add --style NAME" in text and "vintage —" in text and "starry" in text
    assert "pixel_art · SD 1.x" in text
    assert "prompt read as: vintage 1970s photograph of a (red:1.21) fox BREAK snow, faded colors" in text
    assert "Read as: vintage 1970s photograph of a (red:1.21) fox BREAK snow" in text and "Style: vintage" in text
