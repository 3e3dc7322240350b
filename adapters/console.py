"""The terminal chat: the pattern the platform adapters follow (parse in, call the service, render out).

Type ``PATH prompt --flags`` to remix an image file, then act on results by name::

    > photo.jpg a watercolor of the harbor --strength 0.6
    queued 3f9a0c1b2d4e (classic) · ⏳ Queued — position 1
    3f9a0c1b2d4e 🎨 Rendering 50%
    3f9a0c1b2d4e 🎨 Rendering 50% · preview: data/outputs/3f9a0c1b2d4e-preview.jpg
    3f9a0c1b2d4e done: remixes/3f9a0c1b2d4e-0.png
      actions: reroll · vary 1 · … · cutout 1 · zoom N 1.5|2 · pan N left|right|up|down · info
    > upscale 1

Its status lines follow the core's ``StatusTracker`` (bot.status) like a chat's status message: a
line when the state changes, at most one every five seconds; a live preview is written next to the
outputs (its path printed once) and removed when the result is there.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import TextIO

from bot import presenter
from bot.actions import Button, Press
from bot.flags import help_text
from bot.history import JobRecord, write_private
from bot.jobs import Job, Origin, Status
from bot.service import Refusal, Service
from bot.status import Place, StatusTracker
from bot.text import neutral

INFO_LIMIT = 10_000  # a terminal has no message limit; this keeps /info readable
LINE_INTERVAL = 5.0  # seconds between two status lines (and preview files) of one job: plenty in a terminal

COMMANDS = """commands:
  PATH prompt --flags     remix an image file (e.g. photo.jpg warm cinematic --strength 0.6)
  reroll [JOB]            same settings, new seed
  vary N / strong N       subtle / strong variations of output N
  upscale N · fixface N · animate N
  zoom N 1.5|2            zoom out of output N (the picture stays, a new border around it)
  pan N left|right|up|down  extend output N on that side
  cutout N                output N's subject on a transparent background (or its --background)
  source N [JOB]          a before/after sheet of output N
  info [JOB] · history [PAGE] · cancel [JOB] · models · styles · loras · settings [model=… strength=… n=…]
  forget                  delete your whole history and its files (asks to confirm)
  help · quit"""

# console word → button
WORDS = {
    "reroll": Button.reroll,
    "vary": Button.vary,
    "strong": Button.varystrong,
    "varystrong": Button.varystrong,
    "upscale": Button.upscale,
    "fixface": Button.fixface,
    "animate": Button.animate,
    "cutout": Button.cutout,
}
# zoom N 1.5 / pan N left → the button
ZOOMS = {"1.5": Button.zoom15, "2": Button.zoom2, "2.0": Button.zoom2}
PANS = {"left": Button.panleft, "right": Button.panright, "up": Button.panup, "down": Button.pandown}


def image_and_job(rest: str, last_job: str | None) -> tuple[int, str | None]:
    """``[N] [JOB]`` after an action word: the output's index (from 1-based N; 0 when not given) and the
    job (the newest finished one when not given). A job id is 12 hex characters, so one made of digits
    alone is still a job, never an image number (those have at most three digits)."""
    args = rest.split()
    index = int(args.pop(0)) - 1 if args and args[0].isdigit() and len(args[0]) <= 3 else 0
    return max(index, 0), args[0] if args else last_job


class Console:
    def __init__(
        self, service: Service, *, user: str = "local", stdin: TextIO | None = None, stdout: TextIO | None = None
    ):
        self.service = service
        self.origin = Origin(platform="console", user_id=user, chat_id="console", user_name=user, private=True)
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._last_job: str | None = None  # the newest finished job: actions default to it
        self._printed: dict[str, str] = {}  # job id → the status line printed last
        self._previews: dict[str, Path] = {}  # job id → its live preview file
        self._open: set[str] = set()  # jobs asked for here whose finished event isn't fully handled yet
        # The terminal keeps no messages to find again (no history) and never waits for one.
        self.status: StatusTracker[str] = StatusTracker(
            self, None, interval=LINE_INTERVAL, preview_interval=LINE_INTERVAL, patience=0.0
        )

    def say(self, text: str) -> None:
        """A line to the terminal: nothing in it (a prompt, a file's text) can steer the terminal."""
        print(neutral(text), file=self._out, flush=True)

    async def run(self) -> None:
        self.service.listen("console", self.status.on_event)
        self.say("remixbot chat — type `help` for commands, `quit` to leave.")
        while True:
            line = await asyncio.to_thread(self._in.readline)
            if not line:  # end of input: wait for the jobs still under way, then leave
                await self._drain()
                return
            line = line.strip()
            if line in ("quit", "exit"):
                return
            if line:
                await self.handle(line)

    async def _drain(self) -> None:
        while self._open or any(not job.status.finished for job in await self.service.jobs(self.origin, per_page=20)):
            await asyncio.sleep(0.05)
        await self.status.settled()

    async def handle(self, line: str) -> None:
        try:
            await self._dispatch(line)
        except Refusal as refusal:
            self.say(f"sorry: {refusal}")

    async def _dispatch(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "help":
            self.say(COMMANDS + "\n\n" + help_text(self.service.settings.limits))
        elif word in WORDS:
            await self._press(WORDS[word], rest.strip())
        elif word in ("zoom", "pan"):
            await self._outpaint(word, rest.split())
        elif word == "source":
            await self._before_after(rest.strip())
        elif word == "info":
            await self._info(rest.strip() or self._last_job)
        elif word == "history":
            await self._history(int(rest) if rest.strip().isdigit() else 0)
        elif word == "cancel":
            cancelled = await self.service.cancel(self.origin, rest.strip() or None)
            self.say(f"cancelled: {', '.join(cancelled)}" if cancelled else "nothing to cancel")
        elif word == "models":
            availability = await self.service.availability()
            for entry in self.service.models:
                state = "ready" if availability.get(entry.name) is None else availability[entry.name]
                self.say(f"{entry.name}: {entry.description} [{state}]")
        elif word == "styles":
            self.say(presenter.styles_text(await self.service.styles(self.origin), presenter.Plain(), INFO_LIMIT))
        elif word == "loras":
            self.say(presenter.loras_text(await self.service.loras(), presenter.Plain(), INFO_LIMIT))
        elif word == "settings":
            await self._settings(rest)
        elif word == "forget":
            await self._forget(rest.strip() or None)
        else:
            await self._remix(line)

    async def _remix(self, line: str) -> None:
        path_text, _, text = line.partition(" ")
        if path_text.startswith(("'", '"')):
            parts = shlex.split(line)
            path_text, text = parts[0], " ".join(shlex.quote(p) if " " in p else p for p in parts[1:])
        path = Path(path_text).expanduser()
        if not path.is_file():
            self.say(f"sorry: no file at {path_text} — start with an image path, or type `help`")
            return
        ticket = await self.service.submit(self.origin, text, await asyncio.to_thread(path.read_bytes))
        self._open.update(job.id for job in ticket.jobs)
        for job in ticket.jobs:
            await self.status.post(job, ticket.position if job is ticket.job else 0, job.request.model)
        if read := presenter.reading(ticket.job.request):
            self.say(f"  prompt read as: {read}")
        if ticket.offer:
            self.say(f"this image carries settings; to reuse them type: {path_text} {ticket.offer}")

    async def _press(self, button: Button, rest: str) -> None:
        index, job_id = image_and_job(rest, self._last_job)
        if job_id is None:
            raise Refusal("nothing to act on yet — remix an image first")
        ticket = await self.service.act(self.origin, Press(button, job_id, index))
        self._open.add(ticket.job.id)
        await self.status.post(ticket.job, ticket.position, f"{button.value} of {job_id}")

    async def _outpaint(self, word: str, args: list[str]) -> None:
        """``zoom N 1.5|2 [JOB]`` or ``pan N left|right|up|down [JOB]`` (N and the job are optional)."""
        names = ZOOMS if word == "zoom" else PANS
        number = args.pop(0) if len(args) >= 2 and args[0].isdigit() else ""
        how = args.pop(0).lower().removesuffix("x") if args else ""
        if how not in names:
            usage = "zoom N 1.5 or zoom N 2" if word == "zoom" else "pan N left, right, up or down"
            raise Refusal(f"say how: {usage}")
        await self._press(names[how], " ".join([number, *args]).strip())

    async def _before_after(self, rest: str) -> None:
        index, job_id = image_and_job(rest, self._last_job)
        if job_id is None:
            raise Refusal("nothing to show yet — remix an image first")
        self.say(f"before/after: {await self._save_before_after(job_id, index)}")

    async def _save_before_after(self, job_id: str, index: int) -> Path:
        data = await self.service.before_after(self.origin, job_id, index)
        path = self.service.history.data_dir / "outputs" / f"{job_id}-{index}-before-after.png"
        await asyncio.to_thread(write_private, path, data)
        return path

    async def _deliver_compare_sheet(self, record: JobRecord) -> None:
        """When this was the last job of a --compare set: write the side-by-side sheet, print its path."""
        if record.compare_of is None:
            return
        sheet = await self.service.compare_sheet(record.compare_of)
        if sheet is not None:
            path = self.service.history.data_dir / "outputs" / f"{record.compare_of}-compare.png"
            await asyncio.to_thread(write_private, path, sheet)
            self.say(f"{record.compare_of} compare sheet: {path}")

    async def _info(self, job_id: str | None) -> None:
        """A job's settings: ``job_id``, or the newest job."""
        record = await self.service.info(self.origin, job_id)
        self.say(presenter.info(record, presenter.Plain(), INFO_LIMIT))

    async def _history(self, page: int) -> None:
        records = await self.service.jobs(self.origin, page=page)
        if not records:
            self.say("no jobs yet" if page == 0 else "no more jobs")
        for number, record in enumerate(records, start=1):
            self.say(presenter.history_line(number, record, presenter.Plain()))

    async def _forget(self, code: str | None) -> None:
        answer = await self.service.forget(self.origin, code)
        if answer.done:
            self._last_job = None
            self.say(f"forgotten: {answer.jobs} job(s), their files and your settings")
        else:
            self.say(f"this deletes all {answer.jobs} of your jobs and their files; to confirm: forget {answer.code}")

    async def _settings(self, rest: str) -> None:
        defaults = await self.service.user_settings(self.origin)
        for pair in rest.split():
            key, _, value = pair.partition("=")
            if not value:
                raise Refusal(f"settings take model=…, strength=…, n=… (got {pair!r})")
            defaults = await self.service.change_setting(self.origin, key, value)
        strength = "model default" if defaults.strength is None else defaults.strength
        self.say(f"settings: model={defaults.model} strength={strength} n={defaults.num_images_per_prompt}")

    # the status tracker's Screen: a status message is a line in the terminal ----------------

    async def send(self, job: Job, line: str, where: str) -> Place:
        """``where``: what the job is, e.g. "classic" or "reroll of 3f9a0c1b2d4e"."""
        self.say(f"queued {job.id} ({where}) · {line}")
        self._printed[job.id] = line
        return Place(0, 0)

    async def edit(self, place: Place, record: JobRecord, line: str) -> None:
        if self._printed.get(record.id) != line:
            self._printed[record.id] = line
            self.say(f"{record.id} {line}")

    async def preview(self, place: Place, record: JobRecord, line: str, jpeg: bytes) -> Place:
        path = self.service.history.data_dir / "outputs" / f"{record.id}-preview.jpg"
        await asyncio.to_thread(write_private, path, jpeg)
        if record.id not in self._previews:
            self._previews[record.id] = path
            self._printed[record.id] = line
            self.say(f"{record.id} {line} · preview: {path}")
        else:
            await self.edit(place, record, line)
        return place

    async def finish(self, place: Place | None, record: JobRecord, line: str) -> None:
        try:
            self._printed.pop(record.id, None)
            preview = self._previews.pop(record.id, None)
            if preview is not None:  # the result replaces it
                await asyncio.to_thread(preview.unlink, missing_ok=True)
            if record.status is Status.done:
                self._last_job = record.id
                paths = ", ".join(str(out.path) for out in record.outputs)
                self.say(f"{record.id} done: {paths}" + (f" ({record.note})" if record.note else ""))
                n = len(record.outputs)
                words = ("vary", "strong", "upscale", "fixface", "animate", "source", "cutout")
                each = " · ".join(f"{w} {i}" for w in words for i in range(1, n + 1))
                self.say(f"  actions: reroll · {each} · zoom N 1.5|2 · pan N left|right|up|down · info")
                if record.request.show_source:
                    for out in record.outputs:
                        if out.media_type.startswith("image/"):
                            self.say(f"  before/after: {await self._save_before_after(record.id, out.index)}")
            else:
                self.say(f"{record.id} {line}")
            await self._deliver_compare_sheet(record)
        finally:
            self._open.discard(record.id)
