"""The console's status lines and live previews, through the real path: a worker's events (played on
the Redis wire, ``tests/adapters/played_worker.py``) reach the real ArqQueue, the service, the core's
status tracker and the console, which prints lines and writes the preview file."""

from __future__ import annotations

import asyncio
import io
import queue
import re
from dataclasses import replace
from pathlib import Path

from adapters.cli import build_service, close_service
from adapters.console import LINE_INTERVAL, Console
from bot.jobs import Event, Status
from tests.adapters.played_worker import PlayedWorker, jpeg, png


class Typed:
    """What the person types, line by line, when the test says so (``readline`` blocks meanwhile)."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue()

    def type(self, line: str) -> None:
        self._lines.put(line + "\n")

    def close(self) -> None:
        self._lines.put("")

    def readline(self) -> str:
        return self._lines.get()


async def printed(out: io.StringIO, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := re.search(pattern, out.getvalue())):
        assert asyncio.get_running_loop().time() < deadline, f"never printed {pattern!r}:\n{out.getvalue()}"
        await asyncio.sleep(0.02)
    return found


async def test_the_console_shows_eta_progress_and_one_preview_file_that_the_result_replaces(
    settings, redis_url, images_dir
):
    worker = PlayedWorker(redis_url)
    await worker.beat("classic", ["classic"], seconds_per_job=95.0)
    service = await build_service(replace(settings, redis_url=redis_url))
    typed, out = Typed(), io.StringIO()
    console = Console(service, user="alice", stdin=typed, stdout=out)  # type: ignore[arg-type]
    running = asyncio.create_task(console.run())
    try:
        typed.type(f"{images_dir / 'coffee.png'} a watercolor harbor")
        job_id = (await printed(out, r"queued ([0-9a-f]{12}) \(classic\)"))[1]
        await printed(out, rf"{job_id} ⏳ Queued — position 1 · ready in about 2 min")  # the ETA

        await worker.publish(Event(job_id, Status.running))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for step in range(1, 21):
            await worker.publish(Event(job_id, Status.running, step=step, total=20, preview=jpeg(step * 12)))
            await asyncio.sleep(0.05)
        took = loop.time() - started

        path = Path((await printed(out, rf"{job_id} 🎨 Rendering \d+% · preview: (\S+)"))[1])
        assert path.parent == service.history.data_dir / "outputs", "next to the outputs"
        for _ in range(750):  # the newest preview, once the interval allows it (up to 15 s)
            if path.read_bytes() == jpeg(240):
                break
            await asyncio.sleep(0.02)
        assert path.read_bytes() == jpeg(240)
        assert out.getvalue().count("preview:") == 1, "the path is printed once"
        lines = re.findall(rf"{job_id} 🎨 Rendering (\d+)%", out.getvalue())
        assert [int(p) for p in lines] == sorted(int(p) for p in lines) and lines[-1] == "100"
        assert len(lines) <= took / LINE_INTERVAL + 2, "at most a line per interval"

        picture = png()
        await worker.finish(job_id, picture)
        done = Path((await printed(out, rf"{job_id} done: (\S+)"))[1])
        assert done.read_bytes() == picture
        for _ in range(100):
            if not path.exists():
                break
            await asyncio.sleep(0.02)
        assert not path.exists(), "the result replaces the preview"
        typed.close()
        await asyncio.wait_for(running, 20)
    finally:
        typed.close()
        if not running.done():
            running.cancel()
        await close_service(service)
        await worker.close()


def test_a_job_id_made_of_digits_is_a_job_not_an_image_number():
    from adapters.console import image_and_job

    assert image_and_job("", "abc123def456") == (0, "abc123def456")
    assert image_and_job("2", "abc123def456") == (1, "abc123def456")
    assert image_and_job("2 0123456789ab", None) == (1, "0123456789ab")
    assert image_and_job("123456789012", "abc123def456") == (0, "123456789012"), "a 12-digit hex job id"
    assert image_and_job("3 123456789012", None) == (2, "123456789012")
    assert image_and_job("0", None) == (0, None)
