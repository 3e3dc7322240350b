"""The README's two set-up commands stay true."""

import re
import shlex
import subprocess
import sys

from bot import images
from tests.integration.harness import ROOT


def command(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.+)\n```", text)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_the_run_command_remixes_the_sample_with_its_parameters(env, tmp_path):
    line = command("run-command")
    remix = shlex.split(line.split(".venv/bin/remixbot ", 1)[1])
    assert remix[0] == "remix"
    remix[remix.index("-o") + 1] = str(tmp_path / "remixes")
    out = subprocess.run(
        [sys.executable, "-m", "adapters.cli", *remix], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    (path,) = out.stdout.split()
    params = images.parse_parameters(images.read_parameters(open(path, "rb").read()))
    assert params["model"] == "classic" and params["seed"] == 1 and params["strength"] == 0.7


def test_ci_runs_the_readme_test_command():
    extracted = subprocess.run(
        ["sed", "-n", "/<!-- test-command -->/{n;n;p;}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == command("test-command")
    assert "pytest" in extracted and "config/constraints.txt" in extracted
    assert "README.md" in (ROOT / ".ci" / "run").read_text()
