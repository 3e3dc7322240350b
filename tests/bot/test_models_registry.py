"""models.toml as the core reads it: ``weights:`` sources and [defaults] that list choices."""

from pathlib import Path

import pytest

from bot.jobs import Action
from bot.models import load_models, parse_models

TOML = """
[defaults]
upscale = ["realesrgan-x4", "classic"]

[models.classic]
kind = "classic"

[models.realesrgan-x4]
kind = "upscale-spandrel"
source = "weights:realesrgan/realesrgan-x4plus.safetensors"

[models.local]
kind = "upscale-spandrel"
source = "./here.pth"
"""


def test_weights_sources_resolve_under_the_given_weights_folder(tmp_path):
    models = parse_models(TOML, base=tmp_path, weights=tmp_path / "data" / "weights")
    assert models["realesrgan-x4"].source == str(
        tmp_path / "data" / "weights" / "realesrgan" / "realesrgan-x4plus.safetensors"
    )
    assert models["local"].source == str((tmp_path / "here.pth").resolve())
    assert parse_models(TOML)["realesrgan-x4"].source == str(
        Path("data/weights/realesrgan/realesrgan-x4plus.safetensors")
    )


def test_a_listed_default_settles_on_the_first_choice_that_runs():
    models = parse_models(TOML)
    assert models.for_action(Action.upscale).name == "realesrgan-x4"  # until availability is known
    assert models.settle({"realesrgan-x4": None, "classic": None}).for_action(Action.upscale).name == "realesrgan-x4"
    missing = models.settle({"realesrgan-x4": "needs weights: …", "classic": None})
    assert missing.for_action(Action.upscale).name == "classic"
    assert models.settle({}).for_action(Action.upscale).name == "classic"  # nothing known: the last choice
    assert missing.for_action(Action.remix).name == "classic"


def test_a_default_naming_an_unknown_model_is_refused():
    with pytest.raises(ValueError, match="'nope' is not a model"):
        parse_models('[defaults]\nupscale = ["nope", "classic"]\n')
    with pytest.raises(ValueError, match="lists no model"):
        parse_models("[defaults]\nupscale = []\n")


def test_the_shipped_registry_prefers_real_esrgan_for_upscale(tmp_path):
    from bot.settings import ROOT

    models = load_models(ROOT / "config" / "models.toml", tmp_path / "weights")
    assert models.choices[Action.upscale] == ("realesrgan-fast", "classic")
    for name in ("style", "realesrgan-x4", "realesrgan-anime", "realesrgan-fast"):
        assert models[name].source.startswith(str(tmp_path / "weights"))
