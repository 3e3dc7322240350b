"""The request flags of the creative actions (--motion, --frames, --fps, --ref-scale) and the
before/after button."""

from __future__ import annotations

import pytest

from bot.actions import Button, Press, parse_button
from bot.flags import help_text
from bot.models import parse_models
from bot.requests import Defaults, RequestError, format_request, parse_request
from bot.settings import Limits

MODELS = parse_models("""
[models.svd]
kind = "image-to-video"
strength = 1.0
""")


def parse(text: str):
    return parse_request(text, defaults=Defaults(), limits=Limits(), models=MODELS)


def test_animation_and_reference_flags_fill_the_request_and_read_back():
    request = parse("slow drift --model svd --motion HIGH --frames 48 --fps 12 --ref-scale 0,4")
    knobs = (request.motion, request.num_frames, request.fps, request.ip_adapter_scale)
    assert knobs == ("high", 48, 12, 0.4)
    assert request.prompt == "slow drift"
    assert parse(format_request(request)) == request
    plain = parse("warm")
    assert (plain.motion, plain.num_frames, plain.fps, plain.ip_adapter_scale) == (None, None, None, None)
    assert "--motion" not in format_request(plain)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x --motion wild", "motion must be low or high, got wild"),
        ("x --frames 500", "frames must be between 2 and 120, got 500"),
        ("x --frames 1", "frames must be between 2 and 120, got 1"),
        ("x --fps 0", "fps must be between 1 and 60, got 0"),
        ("x --ref-scale 2", "ref-scale must be between 0 and 1, got 2"),
        ("x --motion", "--motion needs a value, e.g. --motion high"),
        ("x --frame 24", "did you mean --frames?"),
    ],
)
def test_bad_values_are_friendly_one_liners(text, message):
    with pytest.raises(RequestError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_help_lists_the_new_flags():
    words = {word.rstrip(":") for word in help_text(Limits()).split()}
    assert {"--motion", "--frames", "--fps", "--ref-scale"} <= words


def test_the_before_after_button_takes_an_output_and_makes_no_job():
    press = parse_button("source:0123456789ab:2")
    assert press == Press(Button.source, "0123456789ab", 2) and press.id == "source:0123456789ab:2"
    assert Button.source.takes_output and Button.source.action is None
