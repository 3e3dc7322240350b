"""The engine's device and the process-wide torch settings it makes: in engine/device.py, never in a kind."""

import ast
from pathlib import Path

import pytest

from engine import device

ROOT = Path(__file__).resolve().parents[2]


def process_wide_torch_settings(source: str) -> list[str]:
    """Assignments to ``torch.…`` attributes and calls of ``torch.set_…``/``torch.backends.…`` functions."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        )
        found += [ast.unparse(t) for t in targets if ast.unparse(t).startswith("torch.")]
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.startswith(("torch.set_", "torch.backends.", "torch.use_deterministic")):
                found.append(name)
    return found


def test_no_kind_sets_process_wide_torch_state():
    assert process_wide_torch_settings("torch.backends.cudnn.benchmark = True\ntorch.set_num_threads(1)") == [
        "torch.backends.cudnn.benchmark",
        "torch.set_num_threads",
    ]
    for path in (ROOT / "engine" / "kinds").glob("*.py"):
        assert process_wide_torch_settings(path.read_text(encoding="utf-8")) == [], path.name


def test_the_engine_turns_cudnn_autotuning_on_for_cuda_only(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device.configure_torch("cpu")
    assert torch.backends.cudnn.benchmark is False
    device.configure_torch("cuda:0", cudnn_benchmark=False)
    assert torch.backends.cudnn.benchmark is False
    device.configure_torch("cuda:0")
    assert torch.backends.cudnn.benchmark is True


def test_an_engine_on_cuda_configures_torch_when_it_picks_its_device(monkeypatch):
    torch = pytest.importorskip("torch")
    from bot.models import parse_models
    from engine.runner import Engine

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    models = parse_models('[models.tiny]\nkind = "diffusers-img2img"\nsource = "nowhere"\n')
    left_alone = Engine(models, "cuda", cudnn_benchmark=False)
    left_alone.batch_size(models["tiny"])
    assert torch.backends.cudnn.benchmark is False
    engine = Engine(models, "cuda")
    engine.batch_size(models["classic"])  # a kind without torch: no device picked, nothing set
    assert torch.backends.cudnn.benchmark is False
    engine.batch_size(models["tiny"])
    assert torch.backends.cudnn.benchmark is True
    left_alone.close()
    engine.close()
