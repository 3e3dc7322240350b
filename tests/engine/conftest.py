"""Fixtures shared by the engine tests that run the tiny diffusers pipeline."""

from pathlib import Path

import pytest

from bot.models import ModelEntry


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random-weight SD img2img pipeline folder, built offline once per test session."""
    from tests.engine.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="module")
def entry(tiny_sd: Path) -> ModelEntry:
    """A registry entry for the tiny pipeline (a module may define its own ``entry`` instead)."""
    return ModelEntry(
        name="tiny",
        kind="diffusers-img2img",
        source=str(tiny_sd),
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=7.0,
        size=64,
        multiple=8,
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny pipeline gains nothing from a second thread, and on a busy machine it loses a lot."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
