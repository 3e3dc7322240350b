"""The dependency direction (adapters → bot ← engine), the torch-free core, no import cycles and no reaching
into another module's private names, checked on the source."""

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


def test_importing_any_module_never_loads_torch():
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for package in ("bot", "adapters")
        for p in (ROOT / package).rglob("*.py")
    ]
    # the engine's modules too: torch comes in when a model loads, not when a kind is looked at
    modules += [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "engine").rglob("*.py")
        if p.name != "__init__.py"
    ]
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


# --- import cycles and private names ---------------------------------------------------------------

PACKAGES = ("bot", "engine", "adapters")


def project_sources() -> dict[str, str]:
    """Every module of the three packages by dotted name (a package by its own name) → its source."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text(encoding="utf-8")
    return found


def imports_in(tree: ast.Module, functions: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported (top level, in if/try/with/class blocks; none under
    ``if TYPE_CHECKING:``), and with ``functions`` those inside functions too."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not functions:
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending += node.orelse
        else:
            pending += [
                child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt | ast.excepthandler)
            ]
    return found


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = here.split(".") if is_package else here.split(".")[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _loaded(name: str, modules: set[str]) -> set[str]:
    """The project modules that importing ``name`` runs: the module and the packages above it."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules


def import_graph(sources: dict[str, str], functions: bool = False) -> dict[str, set[str]]:
    """Module → the project modules its module-level imports load (with ``functions``: any of its imports)."""
    modules = set(sources)
    graph = {}
    for here, text in sources.items():
        is_package = any(other.startswith(here + ".") for other in modules)
        edges: set[str] = set()
        for node in imports_in(ast.parse(text), functions):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _loaded(alias.name, modules)
            else:
                base = _absolute(node, here, is_package)
                edges |= _loaded(base, modules)
                for alias in node.names:
                    edges |= _loaded(f"{base}.{alias.name}", modules)
        graph[here] = edges - {here}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the modules along it (first == last)."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []

    def walk(module: str) -> None:
        path.append(module)
        for other in sorted(graph[module]):
            if other in path:
                cycles.append(path[path.index(other) :] + [other])
            elif other not in done:
                walk(other)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            walk(module)
    return cycles


def private_reaches(sources: dict[str, str]) -> list[str]:
    """Uses of another project module's ``_private`` names: ``from m import _x`` and ``m._x`` (anywhere
    in the module, function-level imports too)."""

    def private(name: str) -> bool:
        return name.startswith("_") and not name.endswith("__")

    found = []
    for here, text in sources.items():
        tree = ast.parse(text)
        modules_by_alias = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in sources:
                        modules_by_alias[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module in sources and node.level == 0:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in sources:
                        modules_by_alias[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    elif private(alias.name) and node.module != here:
                        found.append(f"{here}:{node.lineno}: from {node.module} import {alias.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                owner = modules_by_alias.get(ast.unparse(node.value))
                if owner is not None and owner != here:
                    found.append(f"{here}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_import_cycle_at_module_level():
    cycles = import_cycles(import_graph(project_sources()))
    assert not cycles, "module-level import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def test_engine_dependencies_point_one_way_even_through_imports_inside_functions():
    engine = {name: text for name, text in project_sources().items() if name.split(".")[0] == "engine"}
    cycles = import_cycles(import_graph(engine, functions=True))
    assert not cycles, "engine import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def test_no_module_reaches_into_another_modules_private_names():
    assert private_reaches(project_sources()) == []


def test_the_cycle_and_private_name_checks_catch_what_they_look_for():
    sources = {
        "engine": "",
        "engine.a": "from engine import b\n",
        "engine.b": "from . import c\nif TYPE_CHECKING:\n    from engine import d\n",
        "engine.c": "import engine.a\n\ndef later():\n    from engine import d\n",
        "engine.d": "from engine.b import _hidden\nimport engine.c as see\nsee._secret()\nsee.__name__\n",
    }
    graph = import_graph(sources)
    assert graph["engine.b"] == {"engine", "engine.c"}  # neither the TYPE_CHECKING nor the function import
    assert import_cycles(graph) == [["engine.a", "engine.b", "engine.c", "engine.a"]]
    assert import_graph(sources, functions=True)["engine.c"] == {"engine", "engine.a", "engine.d"}
    assert private_reaches(sources) == [
        "engine.d:1: from engine.b import _hidden",
        "engine.d:3: see._secret",
    ]
