"""docs/models.md, the operator's guide to models.toml, covers every kind and every option the engine
reads, and every kind module declares itself the one way the engine uses."""

import re
from pathlib import Path

from bot.models import ModelEntry, load_models
from engine import registry
from engine.work import Kind

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
# entry.options.get("x"), entry.options["x"], int_option(entry, "x", …)
OPTION_READ = re.compile(r"""options(?:\.get\(|\[)\s*["'](\w+)["']|int_option\(\s*\w+,\s*["'](\w+)["']""")


def options_read_by_the_engine() -> set[str]:
    found = set()
    for path in (ROOT / "engine").rglob("*.py"):
        for match in OPTION_READ.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    return found


def test_every_option_the_engine_reads_is_in_the_guide():
    options = options_read_by_the_engine()
    assert {"dtype", "scheduler", "tile", "yunet", "ip_adapter", "seconds"} <= options  # the scan finds them
    missing = sorted(name for name in options if f"`{name}`" not in GUIDE)
    assert missing == [], f"options read in engine/ but not in docs/models.md: {missing}"


def test_every_kind_has_its_section_and_declares_itself():
    headings = [line for line in GUIDE.splitlines() if line.startswith("### ")]
    for kind in registry.KINDS:
        assert any(f"`{kind}`" in line for line in headings), f"docs/models.md has no section for {kind}"
        declared = registry.kind_of(registry_entry(kind))
        assert isinstance(declared, Kind)
    assert registry.kind_of(registry_entry("classic")).device == "cpu"
    assert registry.kind_of(registry_entry("diffusers-img2img")).batches


def test_the_shipped_models_toml_uses_only_known_kinds_and_documented_options():
    models = load_models(ROOT / "config" / "models.toml")
    for entry in models:
        assert entry.kind in registry.KINDS
        undocumented = sorted(key for key in entry.options if f"`{key}`" not in GUIDE)
        assert undocumented == [], f"{entry.name}: {undocumented} not in docs/models.md"


def registry_entry(kind: str) -> ModelEntry:
    return ModelEntry(name=kind, kind=kind)
