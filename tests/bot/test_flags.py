"""bot.flags: the one flag table. Every flag parses, writes back, is in /help with its bounds, and
its bounds come from the limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.flags import RequestError, flag_table, help_text, number
from bot.jobs import Request
from bot.models import Models, parse_models
from bot.requests import Defaults, format_request, parse_request
from bot.settings import Limits
from bot.styles import load_styles

MODELS = dataclasses.replace(
    parse_models("""
[models.fast]
kind = "diffusers-img2img"
strength = 0.5
"""),
    styles=load_styles(Path(__file__).parents[2] / "config" / "styles.toml"),
)
LIMITS = Limits()
FLAGS = flag_table(LIMITS)


def parse(text: str, models: Models = MODELS, limits: Limits = LIMITS, **given: object) -> Request:
    return parse_request(text, defaults=Defaults(), limits=limits, models=models, given=given or None)


def test_every_flag_fills_a_request_field_of_its_own():
    fields = {field.name for field in dataclasses.fields(Request)}
    assert all(flag.field in fields for flag in FLAGS.values())
    assert len({flag.field for flag in FLAGS.values()}) == len(FLAGS)
    assert len({flag.keyword for flag in FLAGS.values()}) == len(FLAGS)
    assert not set(FLAGS.aliases) & set(FLAGS), "an alias never shadows a flag"


@pytest.mark.parametrize("name", list(FLAGS))
def test_every_flag_parses_its_example_and_writes_it_back(name: str):
    flag = FLAGS[name]
    request = parse(f"a cat --{flag.name} {flag.example}".rstrip())
    value, read = getattr(request, flag.field), flag.read(flag.example or "yes")
    if isinstance(read, tuple):  # --compare: other models than the request's own
        read = tuple(model for model in read if model != request.model)
    assert value == read
    if flag.applied:  # --style: what it set is written back, not the flag (a repeat needs no preset)
        assert f"--{flag.name}" not in format_request(request)
        assert parse(format_request(request)) == dataclasses.replace(request, **{flag.field: ""})
        return
    assert flag.write(value) in format_request(request)
    assert parse(format_request(request)) == request


@pytest.mark.parametrize("name", [name for name, flag in FLAGS.items() if flag.low is not None])
def test_every_bounded_flag_takes_its_bounds_and_refuses_beyond_them(name: str):
    flag = FLAGS[name]
    assert flag.low is not None and flag.high is not None
    for edge in (flag.low, flag.high):
        written = number(edge) if flag.kind == "float" else str(int(edge))
        assert getattr(parse(f"--{name} {written}"), flag.field) == edge
    step = 0.5 if flag.kind == "float" else 1
    for outside in (flag.low - step, flag.high + step):
        written = number(outside) if flag.kind == "float" else str(int(outside))
        with pytest.raises(RequestError, match=f"{name} must be between {number(flag.low)} and {number(flag.high)}"):
            parse(f"--{name} {written}")


@pytest.mark.parametrize("name", [name for name, flag in FLAGS.items() if flag.choices])
def test_every_flag_with_choices_takes_them_only(name: str):
    flag = FLAGS[name]
    for choice in flag.choices:
        assert getattr(parse(f"--{name} {choice}"), flag.field) == choice
    with pytest.raises(RequestError, match=f"{name} must be {flag.bounds}"):
        parse(f"--{name} 3")


def test_help_has_every_flag_its_aliases_and_its_bounds():
    text = help_text(LIMITS)
    lines = {line.split(" ", 1)[0].rstrip(":"): line for line in text.splitlines() if line.startswith("--")}
    assert list(lines) == [f"--{name}" for name in FLAGS]
    for name, flag in FLAGS.items():
        assert flag.help in lines[f"--{name}"]
        assert f"({flag.bounds})" in lines[f"--{name}"] or not flag.bounds
        for alias in flag.aliases:
            assert ("-" if len(alias) == 1 else "--") + alias in lines[f"--{name}"]
    assert parse(text.split("Example: ", 1)[1]).negative_prompt == "blurry, text"


def test_bounds_follow_the_limits():
    limits = Limits(
        max_size=768, max_output_size=2048, min_size=128, max_steps=12, max_num_images=8, max_prompt_length=50
    )
    flags = flag_table(limits)
    assert (flags["size"].low, flags["size"].high) == (128, 2048)
    assert (flags["steps"].high, flags["n"].high, flags["no"].max_length) == (12, 8, 50)
    assert (
        "--size 1024: longest side in pixels (1k, 2k, 4k too); above 768 it is upscaled after rendering "
        "(128 to 2048)" in help_text(limits)
    )
    with pytest.raises(RequestError, match="size must be between 128 and 2048, got 4k"):
        parse("--size 4k", limits=limits)
    assert parse("--size 2K", limits=limits).size == 2048 and parse("--size 1k", limits=limits).size == 1024
    with pytest.raises(RequestError, match="size must be between 128 and 2048, got 3000"):
        parse("--size 3000", limits=limits)


def test_the_output_cap_never_falls_below_the_render_cap():
    flags = flag_table(Limits(max_size=2048, max_output_size=1024))
    assert flags["size"].high == 2048 and parse("--size 2k", limits=Limits(max_size=2048)).size == 2048


def test_background_runs_to_the_next_flag_and_reads_back():
    request = parse("a cat --bg a sunny beach at dusk --seed 3 --no blur")
    assert (request.prompt, request.background, request.seed, request.negative_prompt) == (
        "a cat",
        "a sunny beach at dusk",
        3,
        "blur",
    )
    assert parse(format_request(request)) == request
    with pytest.raises(RequestError, match="The background is too long"):
        parse("a cat --background " + "x" * 201)


def test_typed_options_build_the_same_request_as_text():
    typed = parse(
        "a cat",
        model="fast",
        strength=0.25,
        no="blurry",
        seed=7,
        n=2,
        size=512,
        steps=20,
        cfg=6.5,
        scale=4,
        compare="classic",
        motion="low",
        frames=24,
        fps=12,
        **{"image-cfg": 1.5, "show-source": True, "ref-scale": 0.5},
    )
    text = parse(
        "a cat --model fast --strength 0.25 --no blurry --seed 7 --n 2 --size 512 --steps 20 --cfg 6.5 --scale 4"
        " --compare classic --motion low --frames 24 --fps 12 --image-cfg 1.5 --show-source --ref-scale 0.5"
    )
    assert typed == text
    assert typed.compare == ("classic",) and typed.negative_prompt == "blurry"


def test_typed_options_are_checked_like_text():
    with pytest.raises(RequestError, match="size must be between 64 and 4096, got 8192"):
        parse("a cat", size=8192)
    with pytest.raises(RequestError, match="scale must be 2 or 4, got 3"):
        parse("a cat", scale=3)
    with pytest.raises(RequestError, match="seed can't be 1.5"):
        parse("a cat", seed=1.5)
    with pytest.raises(RequestError, match="--seed is given twice"):
        parse("a cat --seed 3", seed=4)
