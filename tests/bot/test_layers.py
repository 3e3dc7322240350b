"""The dependency direction (adapters → bot ← engine) and the torch-free core, checked on the source."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = {"discord", "telegram"}
TORCH = {"torch", "torchvision", "diffusers", "transformers", "accelerate", "spandrel"}


def imports_of(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path.relative_to(ROOT)] = names
    return found


def test_the_core_imports_no_platform_no_torch_no_engine_no_adapter():
    for path, names in imports_of("bot").items():
        bad = names & (PLATFORMS | TORCH | {"engine", "adapters"})
        assert not bad, f"{path} imports {bad}"


def test_the_engine_imports_no_adapter_and_no_platform():
    for path, names in imports_of("engine").items():
        bad = names & (PLATFORMS | {"adapters"})
        assert not bad, f"{path} imports {bad}"


def test_only_the_bootstrap_adapter_knows_the_engine():
    for path, names in imports_of("adapters").items():
        if path.name == "cli.py":
            continue
        assert "engine" not in names and not (names & TORCH), f"{path} imports {names & (TORCH | {'engine'})}"


def test_importing_every_core_and_adapter_module_never_loads_torch():
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for package in ("bot", "adapters")
        for p in (ROOT / package).rglob("*.py")
    ]
    modules += ["engine.runner", "engine.registry", "engine.worker", "engine.kinds.classic"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        if error.name in ('discord', 'telegram'):\n            continue\n        raise\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(TORCH)!r})\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"torch-family modules loaded: {out.stdout}"
