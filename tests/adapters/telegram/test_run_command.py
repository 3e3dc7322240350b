"""`remixbot run` with TELEGRAM_TOKEN set starts the Telegram adapter (the real bootstrap, in its
own process) against the fake Bot API server; and the adapter never pulls in the engine."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from tests.adapters.telegram.harness import ROOT, TOKEN, models_file, remix


async def test_remixbot_run_serves_telegram_until_terminated(fake, env, tmp_path, alice):
    env = dict(
        env,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_BASE_URL=fake.base_url,
        TELEGRAM_BASE_FILE_URL=fake.base_file_url,
        REMIXBOT_MODELS=str(models_file(tmp_path)),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await fake.wait_for(lambda: fake.calls_of("setMyCommands"), 60, "the bot to start")
        chat = fake.private(alice)
        _, job_id, result = await remix(fake, chat, alice, "/remix watercolor --strength 0.6")
        assert "strength 0.6" in result.text and result.callbacks[0] == f"reroll:{job_id}"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    log = output.decode()
    assert process.returncode == 0, log
    assert "Telegram adapter running as @RemixTestBot" in log
    assert TOKEN not in log and "Traceback" not in log


def test_the_adapter_imports_neither_engine_nor_torch():
    code = (
        "import sys, adapters.telegram.bot; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'torch', 'diffusers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_rejected_token_stops_the_bot_with_a_clear_line_and_no_token(fake, env, tmp_path):
    wrong = "999999:WRONG-secret-token-do-not-print"
    env = dict(
        env,
        TELEGRAM_TOKEN=wrong,
        TELEGRAM_BASE_URL=fake.base_url,
        TELEGRAM_BASE_FILE_URL=fake.base_file_url,
        REMIXBOT_MODELS=str(models_file(tmp_path)),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    log = output.decode()
    assert process.returncode != 0
    assert "Telegram rejected TELEGRAM_TOKEN" in log
    assert wrong not in log and wrong.split(":")[1] not in log
