"""The bot under test: the real service (SQLite history, LocalQueue + engine, or ArqQueue + a real
worker) and the real PTB Application polling the fake Bot API server; plus helpers that read
the chat the way a person would (status messages, result photos, buttons).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from adapters.telegram.bot import build_application, polling
from adapters.telegram.options import Options
from bot import sheets
from bot.history import History
from bot.models import load_models
from bot.queue.arq_queue import ArqQueue
from bot.queue.local import LocalQueue
from bot.service import Service
from bot.settings import Settings
from tests.adapters.telegram.fake_server import ChatMessage, FakeTelegram

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "424242:AAHs3cr3t-test-token-NEVER-SHOWN"

# Fast and fully observable: no throttling, a short album window, no client-side rate limits
# (429s from the server are still honoured and retried).
FAST = Options(
    edit_interval=0.0,
    action_interval=0.0,
    album_wait=0.2,
    poll_timeout=5,
    overall_max_rate=0,
    group_max_rate=0,
    max_retries=6,
)

MODELS_TOML = """
[defaults]
model = "classic"
upscale = "classic"
fixface = "classic"
animate = "classic"

[models.classic]
kind = "classic"
description = "No weights, instant."
group = "classic"
strength = 0.6
num_inference_steps = 1
guidance_scale = 0.0
size = 512

[models.dreamy]
kind = "classic"
description = "Classic with a softer default strength."
group = "classic"
strength = 0.4
num_inference_steps = 1
guidance_scale = 0.0
size = 512

[models.motion]
kind = "no-such-kind"
description = "Animation (its engine isn't installed on this server)."
group = "classic"
"""

# Fix face on a model this server can't run; Animate on a classic model that makes GIFs.
OTHER_MODELS_TOML = """
[defaults]
model = "classic"
fixface = "motion"
animate = "gifs"

[models.classic]
kind = "classic"
size = 512
num_inference_steps = 1
guidance_scale = 0.0

[models.gifs]
kind = "classic"
description = "Classic, with its clips as GIFs."
clip_format = "gif"

[models.motion]
kind = "no-such-kind"
description = "Its engine isn't installed on this server."
"""

JOB_IN_CAPTION = re.compile(r"\bjob ([0-9a-f]{12})")


def picture(width: int = 160, height: int = 120, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A small picture with some structure (gradients and shapes), as PNG or JPEG bytes."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for x in range(width):
        for y in range(height):
            pixels[x, y] = ((x * 255 // width + seed * 40) % 256, (y * 255 // height) % 256, (x + y + seed * 9) % 256)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(240, 200, 40 + seed * 30 % 200))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def models_file(directory: Path, text: str = MODELS_TOML, name: str = "models.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def sheet_size(*columns: list[tuple[int, int]]) -> tuple[int, int]:
    """The size of the core's labelled sheet (``bot.sheets``) of columns of pictures of these sizes;
    an empty column stands for a job with no picture (its note shows instead)."""
    return sheets.sheet(
        [
            sheets.Column(f"column {i}", tuple(Image.new("RGB", size) for size in sizes), "note")
            for i, sizes in enumerate(columns)
        ]
    ).size


def is_mp4(data: bytes | None) -> bool:
    """An ISO media file: its first box is ``ftyp``."""
    return bool(data) and data[4:8] == b"ftyp"


@dataclass
class Harness:
    fake: FakeTelegram
    settings: Settings
    options: Options = FAST
    redis_url: str = ""
    service: Service | None = None
    application: object = None
    _polling: object = None
    _engine: object = None
    starts: int = field(default=0)
    safety: object = None  # an engine.safety.Safety: the content classifier (embedded mode), else none

    async def start(self) -> None:
        """A bot process: service and adapter wired like ``remixbot run`` (the adapter listens first)."""
        models = load_models(self.settings.models_path, lora_dir=self.settings.lora_dir)
        history = await History.open(self.settings.data_dir)
        if self.redis_url:
            queue = ArqQueue(self.redis_url, job_timeout=60, result_ttl=600)

            def availability():
                return queue.availability(models)
        else:
            from engine import registry
            from engine.runner import Engine

            self._engine = Engine(models, "cpu", safety=self.safety, max_render=self.settings.limits.max_size)
            queue = LocalQueue(self._engine)

            async def availability():
                return await asyncio.to_thread(registry.availability, models)

        self.service = Service(self.settings, models, history, queue, availability=availability, classifier=self.safety)
        self.application = build_application(self.service, self.settings, self.options)
        await self.service.start()
        self._polling = polling(self.application)
        await self._polling.__aenter__()
        self.starts += 1

    async def stop(self) -> None:
        if self._polling is not None:
            await self._polling.__aexit__(None, None, None)
            self._polling = None
        if self.service is not None:
            await self.service.close()
            await self.service.history.close()
            self.service = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


# reading the chat ------------------------------------------------------------------------------


def job_of_status(message: ChatMessage) -> str | None:
    """The job a status message is about (from its ✖️ Cancel button, as first sent)."""
    for row in (message.sent_markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data", "")
            if data.startswith("cancel:"):
                return data.split(":")[1]
    return None


def statuses(fake: FakeTelegram, asked: ChatMessage) -> list[ChatMessage]:
    """The status messages the bot sent in reply to ``asked`` (one per job)."""
    return [m for m in fake.replies_to(asked, "text") if job_of_status(m)]


async def new_jobs(fake: FakeTelegram, asked: ChatMessage, count: int = 1, timeout: float = 20) -> list[str]:
    """Wait for ``count`` status messages answering ``asked``; their job ids."""
    found = await fake.wait_for(
        lambda: len(statuses(fake, asked)) >= count and statuses(fake, asked),
        timeout,
        f"{count} status message(s) answering message {asked.message_id}",
    )
    return [job_of_status(m) for m in found]


def results(fake: FakeTelegram, chat_id: int, job_id: str) -> list[ChatMessage]:
    return [m for m in fake.bot_messages(chat_id, "photo") if f"job {job_id}" in m.text]


async def wait_results(
    fake: FakeTelegram, chat_id: int, job_id: str, count: int = 1, timeout: float = 30
) -> list[ChatMessage]:
    def enough():
        found = results(fake, chat_id, job_id)
        return found if len(found) >= count else None

    return await fake.wait_for(enough, timeout, f"{count} result(s) of job {job_id}")


def status_message(fake: FakeTelegram, chat_id: int, job_id: str) -> ChatMessage:
    return next(m for m in fake.bot_messages(chat_id, "text") if job_of_status(m) == job_id)


async def wait_final(fake: FakeTelegram, chat_id: int, job_id: str, timeout: float = 30) -> ChatMessage:
    """The job's status message once it shows a final state (done, failed, cancelled)."""

    def final():
        message = status_message(fake, chat_id, job_id)
        return (
            message
            if message.text.startswith(("✅", "⚠️", "✖️"))
            or " · ✅" in message.text
            or " · ⚠️" in message.text
            or " · ✖️" in message.text
            else None
        )

    return await fake.wait_for(final, timeout, f"the final status of job {job_id}")


def assert_edited_in_order(status: ChatMessage) -> None:
    """A status message only moves forward: queued, rendering 0% → 100%, then one final state, last."""
    percents = [int(m[1]) for text in status.edits if (m := re.search(r"Rendering (\d+)%", text))]
    assert percents == sorted(percents), status.edits
    finals = [text for text in status.edits if re.search("(✅|⚠️|✖️)", text)]
    assert len(finals) == 1 and status.edits[-1] == finals[0], status.edits


async def remix(
    fake: FakeTelegram, chat: dict, user: dict, caption: str, data: bytes | None = None, **kind
) -> tuple[ChatMessage, str, ChatMessage]:
    """A photo captioned ``caption`` → (the user's message, the job id, the result photo)."""
    if not kind:
        kind = {"photo": data if data is not None else picture()}
    asked = fake.send(chat, user, caption=caption, **kind)
    (job_id,) = await new_jobs(fake, asked)
    (result,) = await wait_results(fake, chat["id"], job_id)
    return asked, job_id, result


async def press(fake: FakeTelegram, user: dict, message: ChatMessage, data: str) -> tuple[str, str]:
    """Tap a button that makes a job → (the toast, the new job id)."""
    before = {job_of_status(m) for m in statuses(fake, message)}
    query = fake.press(user, message, data)
    answer = await fake.wait_for(lambda: fake.answer_to(query), 20, f"an answer to {data}")
    jobs = await fake.wait_for(
        lambda: [j for j in (job_of_status(m) for m in statuses(fake, message)) if j not in before],
        20,
        f"a job from {data}",
    )
    return answer.params.get("text", ""), jobs[0]


async def toast(fake: FakeTelegram, user: dict, message: ChatMessage, data: str) -> str:
    """Tap a button → the toast text it was answered with."""
    query = fake.press(user, message, data)
    answer = await fake.wait_for(lambda: fake.answer_to(query), 20, f"an answer to {data}")
    return answer.params.get("text", "")


# a real `remixbot worker` ----------------------------------------------------------------------


def start_worker(redis_url: str, settings: Settings) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REMIXBOT_", "TELEGRAM_", "DISCORD_"))}
    env.update(
        REDIS_URL=redis_url,
        REMIXBOT_MODELS=str(settings.models_path),
        REMIXBOT_POLL_DELAY="0.02",
        REMIXBOT_DATA_DIR=str(settings.data_dir.parent / "worker-data"),
        PYTHONUNBUFFERED="1",
        REMIXBOT_LOG_LEVEL="INFO",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def wait_for_worker(redis_url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until the worker's heartbeat is in Redis (it serves its queues from then on)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(timeout):
            while not await client.keys("remixbot:worker:*"):
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited: {process.stdout.read()}")
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()
