"""bot.requests: the one request grammar, its messages, and its inverse."""

from __future__ import annotations

import dataclasses

import pytest

from bot import images
from bot.flags import help_text
from bot.jobs import Request
from bot.models import Models, parse_models
from bot.requests import (
    Defaults,
    RequestError,
    format_request,
    parse_request,
    request_from_parameters,
)
from bot.settings import Limits

MODELS_TOML = """
[models.fast]
kind = "diffusers-img2img"
strength = 0.5

[models.edit]
kind = "diffusers-instruct-pix2pix"
strength = 1.0

[models.sdxl]
kind = "diffusers-img2img"
strength = 0.35
"""


@pytest.fixture(scope="module")
def models() -> Models:
    return parse_models(MODELS_TOML)


LIMITS = Limits()
DEFAULTS = Defaults()


def parse(text: str, models: Models, defaults: Defaults = DEFAULTS, limits: Limits = LIMITS) -> Request:
    return parse_request(text, defaults=defaults, limits=limits, models=models)


def error(text: str, models: Models, **kwargs) -> str:
    with pytest.raises(RequestError) as caught:
        parse(text, models, **kwargs)
    return str(caught.value)


# --- the whole grammar --------------------------------------------------------------------------------


def test_the_example_from_the_help(models: Models) -> None:
    request = parse(
        "a watercolor painting of the harbor --strength 0.55 --model fast --seed 42 --no blurry, text "
        "--n 4 --size 1024 --steps 30 --cfg 6",
        models,
    )
    assert request == Request(
        prompt="a watercolor painting of the harbor",
        model="fast",
        strength=0.55,
        negative_prompt="blurry, text",
        seed=42,
        num_images_per_prompt=4,
        size=1024,
        num_inference_steps=30,
        guidance_scale=6.0,
    )


def test_plain_prompt_gets_the_defaults(models: Models) -> None:
    assert parse("a cat", models) == Request(prompt="a cat", model="classic", strength=0.6)


def test_empty_text_is_an_empty_prompt(models: Models) -> None:
    assert parse("", models) == Request(prompt="", model="classic", strength=0.6)
    assert parse("--seed 3", models).prompt == ""


def test_prompt_is_all_text_outside_flags(models: Models) -> None:
    request = parse("a cat --seed 3 in a hat --model fast wearing boots", models)
    assert request.prompt == "a cat in a hat wearing boots"
    assert (request.seed, request.model) == (3, "fast")


def test_prompt_keeps_its_own_spacing_and_punctuation(models: Models) -> None:
    assert parse("a cat's hat,  (red:1.2)\nsunset — vivid", models).prompt == (
        "a cat's hat,  (red:1.2)\nsunset — vivid"
    )


def test_a_wholly_quoted_prompt_loses_its_quotes(models: Models) -> None:
    assert parse('"a cat in a hat" --seed 1', models).prompt == "a cat in a hat"
    assert parse('a "neon" sign', models).prompt == 'a "neon" sign'


# --- each flag ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["--strength 0.3", "-s 0.3", "--strength=0.3", "--strength 0,3", "-S 0.3"])
def test_strength(models: Models, text: str) -> None:
    assert parse(text, models).strength == 0.3


@pytest.mark.parametrize("value", ["0", "1", "0.0", "1.0"])
def test_strength_bounds_are_inclusive(models: Models, value: str) -> None:
    assert parse(f"--strength {value}", models).strength == float(value)


def test_strength_errors(models: Models) -> None:
    assert error("--strength 1.7", models) == "strength must be between 0 and 1, got 1.7"
    assert error("--strength -0.2", models) == "strength must be between 0 and 1, got -0.2"
    assert error("--strength lots", models) == "strength must be a number, got 'lots'"
    assert error("--strength nan", models) == "strength must be between 0 and 1, got nan"


@pytest.mark.parametrize(
    "text", ["--model fast", "-m fast", "--model=fast", "--model Fast", '--model "fast"', "--MODEL fast"]
)
def test_model(models: Models, text: str) -> None:
    request = parse(text, models)
    assert (request.model, request.strength) == ("fast", 0.5)  # the model's default strength


def test_unknown_model_lists_the_names_and_suggests(models: Models) -> None:
    assert error("--model fsat", models) == (
        "There's no model called 'fsat' (did you mean fast?). Models: fast, edit, sdxl, classic."
    )
    assert error("--model banana", models) == ("There's no model called 'banana'. Models: fast, edit, sdxl, classic.")


def test_seed(models: Models) -> None:
    assert parse("--seed 0", models).seed == 0
    assert parse("--seed 4294967295", models).seed == 2**32 - 1
    assert parse("a cat", models).seed is None
    assert error("--seed 4294967296", models) == "seed must be between 0 and 4294967295, got 4294967296"
    assert error("--seed -1", models) == "seed must be between 0 and 4294967295, got -1"
    assert error("--seed 4.5", models) == "seed must be a whole number, got '4.5'"


@pytest.mark.parametrize("flag", ["--no", "--negative", "—no", "--NO"])
def test_negative_prompt_runs_until_the_next_flag(models: Models, flag: str) -> None:
    request = parse(f"a harbor {flag} blurry, low quality, text --seed 5 ", models)
    assert request.negative_prompt == "blurry, low quality, text"
    assert (request.prompt, request.seed) == ("a harbor", 5)


def test_negative_prompt_forms(models: Models) -> None:
    assert parse('a cat --no "low quality"', models).negative_prompt == "low quality"
    assert parse("a cat --no “low quality”", models).negative_prompt == "low quality"
    assert parse("a cat --no=blurry, text", models).negative_prompt == "blurry, text"
    assert parse("a cat --no blurry", models).negative_prompt == "blurry"


def test_number_of_images(models: Models) -> None:
    assert parse("--n 4", models).num_images_per_prompt == 4
    assert error("--n 5", models) == "n must be between 1 and 4, got 5"
    assert error("--n 0", models) == "n must be between 1 and 4, got 0"
    assert error("--n two", models) == "n must be a whole number, got 'two'"
    assert parse("--n 8", models, limits=Limits(max_num_images=8)).num_images_per_prompt == 8


def test_size(models: Models) -> None:
    assert parse("--size 1024", models).size == 1024
    assert parse("--size 64", models).size == 64
    assert parse("--size 2048", models).size == 2048  # above the render cap: rendered, then upscaled
    assert parse("--size 4k", models).size == parse("--size 4096", models).size == 4096
    assert error("--size 5000", models) == "size must be between 64 and 4096, got 5000"
    assert error("--size 8k", models) == "size must be a whole number, got '8k'"
    assert error("--size 32", models) == "size must be between 64 and 4096, got 32"
    assert error("--size big", models) == "size must be a whole number, got 'big'"


def test_steps(models: Models) -> None:
    request = parse("--steps 30", models)
    assert request.num_inference_steps == 30
    assert error("--steps 0", models) == "steps must be between 1 and 100, got 0"
    assert error("--steps 101", models) == "steps must be between 1 and 100, got 101"
    small = Limits(max_steps=10)
    assert error("--steps 20", models, limits=small) == "steps must be between 1 and 10, got 20"


def test_cfg(models: Models) -> None:
    assert parse("--cfg 6", models).guidance_scale == 6.0
    assert parse("--cfg 7,5", models).guidance_scale == 7.5
    assert parse("--cfg 0", models).guidance_scale == 0.0
    assert error("--cfg 31", models) == "cfg must be between 0 and 30, got 31"
    assert error("--cfg high", models) == "cfg must be a number, got 'high'"


def test_image_cfg(models: Models) -> None:
    assert parse("--model edit --image-cfg 1.5", models).image_guidance_scale == 1.5
    assert parse("--image_cfg 2", models).image_guidance_scale == 2.0
    assert error("--image-cfg 11", models) == "image-cfg must be between 0 and 10, got 11"


@pytest.mark.parametrize(("value", "scale"), [("2", 2), ("4", 4), ("2x", 2), ("x4", 4)])
def test_scale(models: Models, value: str, scale: int) -> None:
    assert parse(f"--scale {value}", models).scale == scale


@pytest.mark.parametrize("value", ["3", "8", "two"])
def test_scale_errors(models: Models, value: str) -> None:
    assert error(f"--scale {value}", models) == f"scale must be 2 or 4, got {value}"


def test_compare(models: Models) -> None:
    assert parse("--compare fast", models).compare == ("fast",)
    assert parse("--compare fast,edit,sdxl", models).compare == ("fast", "edit", "sdxl")
    assert parse("--compare fast, edit a cat", models) == Request(
        prompt="a cat",
        model="classic",
        strength=0.6,
        compare=("fast", "edit"),
    )
    assert parse("--compare=fast,Fast,edit,fast", models).compare == ("fast", "edit")  # duplicates dropped
    assert parse("--model fast --compare fast,classic", models).compare == ("classic",)  # not the main model


def test_compare_errors(models: Models) -> None:
    assert error("--compare fast,nope", models) == (
        "There's no model called 'nope'. Models: fast, edit, sdxl, classic."
    )
    assert error("--model fast --compare fast", models) == ("--compare needs at least one model other than fast.")


def test_compare_allows_three_other_models_at_most(models: Models) -> None:
    assert parse("--model sdxl --compare fast,edit,classic", models).compare == ("fast", "edit", "classic")
    more = parse_models(MODELS_TOML + '\n[models.extra]\nkind = "diffusers-img2img"\n')
    assert error("--compare fast,edit,sdxl,extra", more) == "--compare takes up to 3 other models, got 4."


def test_show_source_is_a_bare_switch(models: Models) -> None:
    request = parse("a cat --show-source --seed 1", models)
    assert (request.show_source, request.prompt, request.seed) == (True, "a cat", 1)
    assert parse("a cat", models).show_source is False
    assert parse("--show_source", models).show_source is True
    assert parse("--show-source=no", models).show_source is False
    assert error("--show-source=maybe", models) == ("--show-source is a switch; use it without a value, got 'maybe'")


# --- flag syntax --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dash", ["—", "–", "——", "—-", "-", "--"])
def test_autocorrected_dashes_start_flags(models: Models, dash: str) -> None:
    request = parse(f"a cat {dash}seed 7 {dash}model fast", models)
    assert (request.prompt, request.seed, request.model) == ("a cat", 7, "fast")


def test_a_lone_dash_is_prompt_text(models: Models) -> None:
    assert parse("sunset - vivid — warm –", models).prompt == "sunset - vivid — warm –"


def test_equals_form(models: Models) -> None:
    request = parse("a cat --seed=9 --size=512 —strength=0.25 --model=sdxl", models)
    assert (request.seed, request.size, request.strength, request.model) == (9, 512, 0.25, "sdxl")


def test_unknown_flag_suggests_the_closest(models: Models) -> None:
    assert error("a cat --strenght 0.5", models) == ("I don't know the option --strenght; did you mean --strength?")
    assert error("a cat --sed 4", models) == "I don't know the option --sed; did you mean --seed?"
    assert error("a cat —negativ blur", models) == ("I don't know the option --negativ; did you mean --negative?")


def test_unknown_flag_without_a_close_match(models: Models) -> None:
    assert error("a cat --banana 3", models) == ("I don't know the option --banana; send /help to see the options.")


def test_a_flag_given_twice_is_an_error(models: Models) -> None:
    assert error("--seed 1 --seed 2", models) == "--seed is given twice; use it once."
    assert error("-s 0.4 --strength 0.5", models) == "--strength is given twice; use it once."
    assert error("--no a --negative b", models) == "--no is given twice; use it once."
    assert error("--show-source --show-source", models) == "--show-source is given twice; use it once."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a cat --seed", "--seed needs a value, e.g. --seed 42"),
        ("a cat --model --seed 4", "--model needs a value, e.g. --model fast"),
        ("a cat --no --seed 4", "--no needs a value, e.g. --no blurry, text"),
        ("a cat --strength=", "--strength needs a value, e.g. --strength 0.55"),
        ("a cat --compare", "--compare needs a value, e.g. --compare fast,classic"),
        ('a cat --no ""', "--no needs a value, e.g. --no blurry, text"),
    ],
)
def test_missing_values(models: Models, text: str, message: str) -> None:
    assert error(text, models) == message


def test_prompt_length_limit(models: Models) -> None:
    limits = Limits(max_prompt_length=10)
    assert parse("0123456789", models, limits=limits).prompt == "0123456789"
    assert error("0123456789A --seed 1", models, limits=limits) == (
        "The prompt is too long (11 characters); the limit is 10."
    )
    assert error("cat --no 0123456789AB", models, limits=limits) == (
        "The negative prompt is too long (12 characters); the limit is 10."
    )


def test_quoted_flag_like_text_stays_in_the_prompt(models: Models) -> None:
    assert parse('a sign that says "--seed 4"', models) == Request(
        prompt='a sign that says "--seed 4"',
        model="classic",
        strength=0.6,
    )


# --- defaults -----------------------------------------------------------------------------------------


def test_user_defaults_apply(models: Models) -> None:
    defaults = Defaults(model="fast", strength=0.42, num_images_per_prompt=2)
    assert parse("a cat", models, defaults) == Request(
        prompt="a cat",
        model="fast",
        strength=0.42,
        num_images_per_prompt=2,
    )


def test_flags_beat_user_defaults(models: Models) -> None:
    defaults = Defaults(model="fast", strength=0.42, num_images_per_prompt=2)
    request = parse("a cat -m sdxl -s 0.9 --n 1", models, defaults)
    assert (request.model, request.strength, request.num_images_per_prompt) == ("sdxl", 0.9, 1)


def test_user_strength_beats_the_model_default(models: Models) -> None:
    assert parse("--model edit", models, Defaults(strength=0.3)).strength == 0.3
    assert parse("--model edit", models, Defaults()).strength == 1.0


def test_a_saved_model_that_is_gone_falls_back(models: Models) -> None:
    assert parse("a cat", models, Defaults(model="retired")).model == "classic"
    registry = parse_models(MODELS_TOML + '\n[defaults]\nremix = "fast"\n')
    assert parse("a cat", registry, Defaults(model="retired")).model == "fast"


def test_saved_count_is_kept_within_the_limit(models: Models) -> None:
    assert parse("a cat", models, Defaults(num_images_per_prompt=9)).num_images_per_prompt == 4


# --- format_request -----------------------------------------------------------------------------------

ROUND_TRIPS = [
    "a cat",
    "",
    "a watercolor painting of the harbor --strength 0.55 --model fast --seed 42 --no blurry, text "
    "--n 4 --size 1024 --steps 30 --cfg 6",
    "make it snow --model edit --image-cfg 1.25 --cfg 7.5 --strength 1 --show-source",
    "upscale me --scale 4 --compare fast,sdxl --seed 0",
    '"a cat" in a "neon" hat --no "low quality"',
    "--no only a negative",
    "sunset — vivid, (red:1.2) -s 0,333333 --steps 1 --size 64",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_format_then_parse_gives_the_same_request(models: Models, text: str) -> None:
    request = parse(text, models)
    assert parse(format_request(request), models) == request


@pytest.mark.parametrize(
    "request_",
    [
        Request(prompt='"quoted whole"', model="fast", strength=0.5, negative_prompt='"also quoted"'),
        Request(prompt="“curly whole”", model="fast", strength=0.5, negative_prompt="'single'"),
        Request(prompt="p", model="classic", strength=0.123456789, guidance_scale=0.1 + 0.2),
        Request(prompt="multi\nline", model="sdxl", strength=0.35, seed=2**32 - 1, num_images_per_prompt=3),
    ],
)
def test_format_round_trips_hand_made_requests(models: Models, request_: Request) -> None:
    assert parse(format_request(request_), models) == request_


def test_format_request_text(models: Models) -> None:
    request = Request(
        prompt="a harbor",
        model="fast",
        strength=0.55,
        negative_prompt="blurry, text",
        seed=42,
        num_images_per_prompt=4,
        size=1024,
        num_inference_steps=30,
        guidance_scale=6.0,
    )
    assert format_request(request) == (
        "a harbor --model fast --strength 0.55 --seed 42 --n 4 --size 1024 --steps 30 --cfg 6 --no blurry, text"
    )
    bare = Request(prompt="", model="classic", strength=0.6)
    assert format_request(bare) == "--model classic --strength 0.6"


# --- request_from_parameters --------------------------------------------------------------------------

A1111_TEXT = (
    "a castle on a hill\nNegative prompt: watermark\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3922188181, Size: 832x1216, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Denoising strength: 0.45, Version: v1.10.1"
)


def test_request_from_a1111_parameters(models: Models) -> None:
    params = images.parse_parameters(A1111_TEXT)
    request = request_from_parameters(params, defaults=Defaults(model="fast"), models=models)
    assert request == Request(
        prompt="a castle on a hill",
        model="fast",
        strength=0.45,
        negative_prompt="watermark",
        seed=3922188181,
        size=1216,
        num_inference_steps=28,
        guidance_scale=6.5,
    )


def test_request_from_our_own_parameters_keeps_the_model(models: Models) -> None:
    original = Request(
        prompt="a cat",
        model="sdxl",
        strength=0.3,
        negative_prompt="dog",
        image_guidance_scale=1.5,
    )
    text = images.format_parameters(
        original,
        seed=7,
        width=768,
        height=512,
        steps=25,
        guidance_scale=5.0,
        sampler="Euler a",
        model="sdxl",
        strength=0.3,
    )
    request = request_from_parameters(images.parse_parameters(text), defaults=DEFAULTS, models=models)
    assert request == dataclasses.replace(
        original,
        seed=7,
        size=768,
        num_inference_steps=25,
        guidance_scale=5.0,
    )


def test_request_from_parameters_uses_defaults_for_what_is_missing(models: Models) -> None:
    defaults = Defaults(num_images_per_prompt=2)
    request = request_from_parameters({"prompt": "a cat"}, defaults=defaults, models=models)
    assert request == Request(prompt="a cat", model="classic", strength=0.6, num_images_per_prompt=2)
    request = request_from_parameters({}, defaults=Defaults(model="edit"), models=models)
    assert (request.prompt, request.model, request.strength) == ("", "edit", 1.0)
    request = request_from_parameters({}, defaults=Defaults(model="fast", strength=0.2), models=models)
    assert request.strength == 0.2


def test_request_from_parameters_stays_within_limits(models: Models) -> None:
    params = {
        "prompt": "x" * 2000,
        "seed": 2**40,
        "num_inference_steps": 150,
        "guidance_scale": 50.0,
        "width": 4096,
        "height": 2048,
        "strength": 1.5,
        "image_guidance_scale": 20.0,
    }
    request = request_from_parameters(params, defaults=DEFAULTS, models=models)
    assert len(request.prompt) == LIMITS.max_prompt_length
    assert request.seed is None
    assert (request.num_inference_steps, request.guidance_scale, request.size) == (100, 30.0, 1536)
    assert (request.strength, request.image_guidance_scale) == (1, 10.0)
    assert request_from_parameters({"width": 16, "height": 16}, defaults=DEFAULTS, models=models).size == 64


def test_request_from_parameters_result_round_trips(models: Models) -> None:
    params = images.parse_parameters(A1111_TEXT)
    request = request_from_parameters(params, defaults=DEFAULTS, models=models)
    assert parse(format_request(request), models) == request


# --- help ---------------------------------------------------------------------------------------------


def test_help_lists_every_flag_and_an_example_that_parses(models: Models) -> None:
    words = {word.rstrip(":") for word in help_text(Limits()).split()}
    for flag in "--strength --model --seed --no --n --size --steps --cfg --image-cfg --scale".split():
        assert flag in words
    assert {"--compare", "--show-source"} <= words
    example = help_text(Limits()).split("Example: ", 1)[1]
    assert parse(example, models).negative_prompt == "blurry, text"


# --- hostile text ---------------------------------------------------------------------------------


def test_format_characters_are_stripped_before_parsing(models: Models) -> None:
    request = parse("a cat --n\u200b 4 --seed\u2060 7 \x1b[31m", models)
    assert request.prompt == "a cat" and request.num_images_per_prompt == 4 and request.seed == 7


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat --n 4 --compare fast,sdxl",
        'a "quoted" word --seed 1',
        'both "kinds" “of” quotes --n 4',
        "—model sdxl with a long dash",
    ],
)
def test_flags_inside_a_prompt_are_never_parsed_again(models: Models, prompt: str) -> None:
    original = Request(prompt=prompt, model="fast", strength=0.5, negative_prompt="ugly --n 3")
    again = parse(format_request(original), models)
    assert again.num_images_per_prompt == 1 and again.compare == () and again.seed is None
    assert again.model == "fast" and again.negative_prompt.endswith("n 3")
    assert "--n" not in format_request(original).split('"')[-1], "no bare flag survives outside the quotes"


def test_the_offer_from_a_png_keeps_its_prompt_as_prompt(models: Models) -> None:
    found = images.parse_parameters("a cat --n 4 --compare fast,sdxl\nSteps: 20, Seed: 5, Model: fast, CFG scale: 7")
    offer = format_request(request_from_parameters(found, defaults=DEFAULTS, models=models))
    again = parse(offer, models)
    assert again.prompt == "a cat --n 4 --compare fast,sdxl"
    assert (again.num_images_per_prompt, again.compare, again.seed) == (1, (), 5)


def test_non_finite_numbers_never_reach_a_request(models: Models) -> None:
    nan, inf = float("nan"), float("inf")
    params = {"prompt": "x", "strength": nan, "guidance_scale": inf, "image_guidance_scale": nan}
    request = request_from_parameters(params, defaults=DEFAULTS, models=models)
    assert request.strength == models["classic"].strength
    assert request.guidance_scale is None and request.image_guidance_scale is None
    assert "must be between" in error("x --cfg nan", models) and "must be between" in error("x -s inf", models)
