"""/remix and /settings are built from the core's flag table: one option per flag, with the flag's
bounds, choices and help, whatever the limits are."""

from __future__ import annotations

import pytest
from discord import AppCommandOptionType, app_commands

from adapters.discord.commands import remix_command, settings_command
from bot.flags import flag_table
from bot.settings import Limits

TYPES = {
    "int": AppCommandOptionType.integer,
    "float": AppCommandOptionType.number,
    "text": AppCommandOptionType.string,
    "models": AppCommandOptionType.string,
    "switch": AppCommandOptionType.boolean,
}


def options(command: app_commands.Command) -> dict[str, app_commands.Parameter]:
    return {parameter.name: parameter for parameter in command.parameters}


@pytest.mark.parametrize(
    "limits", [Limits(), Limits(max_size=768, min_size=128, max_steps=12, max_num_images=8, max_prompt_length=300)]
)
def test_every_flag_is_an_option_with_the_same_bounds(limits: Limits):
    flags = flag_table(limits)
    built = options(remix_command(limits))
    assert len(built) <= 25, "Discord's limit"
    assert list(built)[:2] == ["image", "prompt"] and built["prompt"].max_value == limits.max_prompt_length
    assert [name for name in built if name.startswith("ref") and name != "ref_scale"] == ["ref1", "ref2", "ref3"]
    assert {name for name in built} == {"image", "prompt", "ref1", "ref2", "ref3"} | {f.keyword for f in flags.values()}
    for flag in flags.values():
        option = built[flag.keyword]
        assert not option.required
        assert option.type is TYPES[flag.kind], flag.name
        assert [choice.value for choice in option.choices] == list(flag.choices)
        if flag.kind in ("int", "float"):
            assert (option.min_value, option.max_value) == (flag.low, flag.high), flag.name
        if flag.max_length is not None:
            assert option.max_value == flag.max_length, flag.name
        assert flag.help[1:] in option.description and flag.bounds in option.description
        assert len(option.description) <= 100, "Discord's limit for a description"


def test_the_size_and_steps_options_are_the_limits_not_more():
    built = options(remix_command(Limits()))
    assert (built["size"].min_value, built["size"].max_value) == (64, 4096)  # 4k: rendered, then upscaled
    assert (built["steps"].min_value, built["steps"].max_value) == (1, 100)


def test_settings_offers_the_same_bounds_as_remix():
    limits = Limits(max_num_images=3)
    remix, settings = options(remix_command(limits)), options(settings_command(limits))
    for name in ("strength", "count"):
        assert (settings[name].min_value, settings[name].max_value) == (remix[name].min_value, remix[name].max_value)
    assert settings["count"].max_value == 3
