"""The `remixbot` commands as a person runs them: real processes, real files."""

import os
import signal
import sqlite3
import subprocess
import sys

from PIL import Image

from bot import images
from tests.integration.harness import ROOT


def remixbot(env, *args, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_remix_writes_a_png_with_its_parameters(env, images_dir, tmp_path):
    out = remixbot(
        env,
        "remix",
        str(images_dir / "coffee.png"),
        "warm",
        "cinematic",
        "--strength",
        "0.7",
        "--seed",
        "1",
        "-o",
        str(tmp_path / "out"),
    )
    assert out.returncode == 0, out.stderr
    paths = out.stdout.split()
    assert len(paths) == 1 and paths[0].endswith(".png")
    data = open(paths[0], "rb").read()
    params = images.parse_parameters(images.read_parameters(data))
    assert params == {**params, "prompt": "warm cinematic", "seed": 1, "strength": 0.7, "model": "classic"}
    assert Image.open(paths[0]).size == (600, 400)
    assert "queued job" in out.stderr


def test_remix_errors_are_one_friendly_line(env, images_dir, bad_images_dir, tmp_path):
    bad = remixbot(env, "remix", str(bad_images_dir / "not_an_image.png"), "warm", "-o", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    flag = remixbot(env, "remix", str(images_dir / "coffee.png"), "warm", "--strength", "1.7")
    assert flag.returncode == 2 and "strength must be between 0 and 1, got 1.7" in flag.stderr
    missing = remixbot(env, "remix", str(tmp_path / "nope.png"), "warm")
    assert missing.returncode == 2 and "can't read" in missing.stderr


def test_models_lists_the_registry_with_availability(env):
    out = remixbot(env, "models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    classic = next(line for line in lines if line.startswith("classic"))
    assert "ready" in classic and "(default)" in classic
    fast = next(line for line in lines if line.startswith("fast"))
    assert "unavailable" in fast
    assert "content filter: nudenet (nudenet), ready" in lines  # the nsfw extra is in the test install
    assert not any(line.startswith("nudenet") for line in lines)  # never a model to pick


def test_history_lists_jobs_with_their_outputs(env, images_dir, tmp_path):
    remixbot(env, "remix", str(images_dir / "coffee.png"), "noir", "--user", "ann", "-o", str(tmp_path))
    out = remixbot(env, "history", "--user", "cli:ann")
    assert out.returncode == 0, out.stderr
    assert "cli:ann" in out.stdout and "done" in out.stdout and "'noir'" in out.stdout and ".png" in out.stdout
    assert remixbot(env, "history", "--user", "cli:nobody").returncode == 1


def test_chat_remixes_and_acts_by_name(env, images_dir):
    script = (
        "\n".join(
            [
                f"{images_dir / 'coffee.png'} sketch --seed 4 --strength 0.9",
                "models",
                "settings n=1",
                "history",
            ]
        )
        + "\n"
    )
    out = remixbot(env, "chat", stdin=script)
    assert out.returncode == 0, out.stderr
    assert "queued" in out.stdout and " done: " in out.stdout and "actions: reroll" in out.stdout
    assert "classic:" in out.stdout and "settings: model=classic" in out.stdout


def test_chat_buttons_by_name(env, images_dir):
    # Each action waits for the one before: the console acts on the newest finished job.
    first = remixbot(env, "chat", stdin=f"{images_dir / 'coffee.png'} cartoon --seed 2\n")
    job = first.stdout.split("queued ")[1].split()[0]
    out = remixbot(env, "chat", stdin=f"reroll {job}\nupscale 1 {job}\nvary 1 {job}\ninfo {job}\nwhat\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" done: ") == 3
    assert f"(reroll of {job})" in out.stdout and f"(upscale of {job})" in out.stdout
    assert "model classic" in out.stdout and "sorry: no file at what" in out.stdout


def test_run_without_tokens_says_what_to_set(env):
    out = remixbot(env, "run")
    assert out.returncode == 2 and "TELEGRAM_TOKEN" in out.stderr


def test_worker_needs_redis(env):
    out = remixbot(env, "worker")
    assert out.returncode == 2 and "REDIS_URL" in out.stderr


def test_a_killed_embedded_process_finishes_its_queued_jobs_on_restart(env, images_dir):
    photo = images_dir / "astronaut.png"
    chat = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "chat"],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for style in ("watercolor", "oil", "cartoon", "sketch"):
        chat.stdin.write(f"{photo} {style} --n 4 --size 1536\n")
    chat.stdin.flush()
    while "queued" not in chat.stdout.readline():
        pass
    os.kill(chat.pid, signal.SIGKILL)  # no goodbye: the process dies with jobs queued
    chat.wait()

    database = os.path.join(env["REMIXBOT_DATA_DIR"], "remixbot.sqlite3")
    with sqlite3.connect(database) as db:
        unfinished = db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]
    assert unfinished >= 1

    again = remixbot(env, "chat", stdin="", timeout=300)  # no input: finish what is left, then leave
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(database) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM jobs")]
        outputs = db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
    assert len(statuses) >= 1 and set(statuses) == {"done"}
    assert outputs == 4 * len(statuses)
