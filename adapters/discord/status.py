"""Status messages: one per job, posted with the bot token, edited as the job waits and runs, and
finally turned into the result message (images or clips, a short line, the persistent buttons).
With ``--show-source`` a message with the before | after sheets answers the result; the job of a
``--compare`` set that finishes last posts the side-by-side sheet (once), answering the set's first
job's message.

The message's ``channel:message`` ids are kept in the history (``set_status_message``), so a job
recovered after a restart still lands in its message, and no edit ever needs the interaction
token (which expires after 15 minutes). Progress edits are throttled per job: at most one per
``interval`` seconds, always showing the newest state; the final edit is never held back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import discord

from adapters.discord import buttons, gate, render
from bot import presenter
from bot.history import JobRecord
from bot.jobs import Event, Job, Status
from bot.service import Refusal, Service

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


@dataclass
class Tracker:
    """What the board knows of one job it is showing."""

    job_id: str
    located: asyncio.Future  # (channel id, message id) once the status message exists
    head: str = ""  # the status message's first line
    pending: str | None = None  # the newest progress line not shown yet
    shown: str = ""  # the progress line the message shows
    last_edit: float = 0.0
    finished: bool = False
    editing: bool = False
    abandoned: bool = False  # its status message could not be posted: nowhere to show anything
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when the job finishes
    flusher: asyncio.Task | None = None


class StatusBoard:
    def __init__(self, client: discord.Client, service: Service, *, interval: float = 1.5, patience: float = 60.0):
        self.client = client
        self.service = service
        self.interval = interval  # seconds between two progress edits of one job
        self.patience = patience  # how long events wait for a job's status message to be posted
        self.upload_limits: dict[int, int] = {}  # channel id → attachment_size_limit last seen there
        self.online = asyncio.Event()  # set once the client is logged in (events may come earlier)
        self.closed = False
        self._trackers: dict[str, Tracker] = {}
        self._deliveries: set[asyncio.Task] = set()

    # posting -----------------------------------------------------------------------------------

    async def post(
        self,
        job: Job,
        channel: discord.abc.Messageable,
        position: int,
        *,
        reply_to: discord.Message | None = None,
        upload_limit: int | None = None,
    ) -> discord.Message:
        """Post a job's status message ("Queued — position 3") and remember where it is."""
        head = render.header(job)
        reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to is not None else None
        message = await channel.send(
            render.status(head, presenter.queued(position)),
            view=buttons.status_view(job.id),
            reference=reference,
            allowed_mentions=NO_MENTIONS,
        )
        if upload_limit:
            self.upload_limits[message.channel.id] = upload_limit
        await self.service.history.set_status_message(job.id, f"{message.channel.id}:{message.id}")
        tracker = self._tracker(job.id)
        tracker.head = head
        tracker.shown = presenter.queued(position)
        tracker.last_edit = time.monotonic()
        if not tracker.located.done():
            tracker.located.set_result((message.channel.id, message.id))
        return message

    def abandon(self, job_id: str) -> None:
        """The job's status message could not be posted (and the job is being cancelled): its events
        have nowhere to go, so they don't wait for a message that will never exist."""
        tracker = self._tracker(job_id)
        if not tracker.located.done():
            tracker.abandoned = True
            tracker.located.set_result(None)

    # events ------------------------------------------------------------------------------------

    async def on_event(self, record: JobRecord, event: Event) -> None:
        """The service's handler for Discord jobs: never blocks on Discord, never raises."""
        if self.closed:
            if event.status.finished:
                log.warning("job %s finished while Discord was shutting down; /history has it", record.id)
            return
        tracker = self._tracker(record.id)
        if not tracker.head:
            tracker.head = render.header(record)
        if record.status_message and not tracker.located.done():
            location = parse_location(record.status_message)
            if location is not None:
                tracker.located.set_result(location)
        if event.status.finished:
            if tracker.finished:
                return
            tracker.finished = True
            tracker.wake.set()
            task = asyncio.create_task(self._deliver(tracker, record), name=f"discord-deliver-{record.id}")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            return
        tracker.pending = presenter.progress(event)
        if tracker.flusher is None or tracker.flusher.done():
            tracker.flusher = asyncio.create_task(self._flush(tracker), name=f"discord-status-{record.id}")

    async def close(self, timeout: float = 10.0) -> None:
        """Let results under way reach the chat (up to ``timeout``), stop progress edits."""
        self.closed = True
        flushers = []
        for tracker in self._trackers.values():
            tracker.finished = True  # no more progress edits
            tracker.wake.set()
            if tracker.flusher is not None and not tracker.flusher.done():
                if not tracker.editing:
                    tracker.flusher.cancel()
                flushers.append(tracker.flusher)
        pending = {*flushers, *self._deliveries}
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._trackers.clear()

    # inside ------------------------------------------------------------------------------------

    def _tracker(self, job_id: str) -> Tracker:
        tracker = self._trackers.get(job_id)
        if tracker is None:
            tracker = self._trackers[job_id] = Tracker(job_id, asyncio.get_running_loop().create_future())
        return tracker

    async def _locate(self, tracker: Tracker) -> tuple[int, int] | None:
        try:
            return await asyncio.wait_for(asyncio.shield(tracker.located), self.patience)
        except TimeoutError:
            return None

    async def _flush(self, tracker: Tracker) -> None:
        """Show the newest progress line, at most once per interval, until the job finishes."""
        await self.online.wait()
        where = await self._locate(tracker)
        if where is None:
            return
        while tracker.pending is not None and not tracker.finished:
            delay = tracker.last_edit + self.interval - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(tracker.wake.wait(), delay)
                except TimeoutError:
                    pass
                continue
            line, tracker.pending = tracker.pending, None
            if line == tracker.shown:
                continue  # nothing new to show: spare the edit
            tracker.shown = line
            tracker.last_edit = time.monotonic()
            tracker.editing = True
            try:
                await self._message(*where).edit(
                    content=render.status(tracker.head, line), allowed_mentions=NO_MENTIONS
                )
            except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
                log.info("status edit for job %s failed: %s", tracker.job_id, error)
            finally:
                tracker.editing = False

    async def _deliver(self, tracker: Tracker, record: JobRecord) -> None:
        try:
            if tracker.flusher is not None and not tracker.flusher.done():
                if not tracker.editing:
                    tracker.flusher.cancel()
                await asyncio.gather(tracker.flusher, return_exceptions=True)
            await self.online.wait()
            where = await self._locate(tracker)
            if tracker.abandoned:
                return
            shown = await self._show(record, where)
            if shown is not None and record.status is Status.done and record.request.show_source:
                await self._post_before_after(record, shown)
        except Exception:
            log.exception("could not deliver job %s to Discord", record.id)
        finally:
            self._trackers.pop(record.id, None)
        if record.compare_of is not None:
            try:
                await self._post_compare_sheet(record)
            except Exception:
                log.exception("could not post the compare sheet of job %s", record.compare_of)

    async def _show(self, record: JobRecord, where: tuple[int, int] | None) -> tuple[int, int] | None:
        """Turn the status message into the result (or post the result anew when it is gone).

        Returns where the result is: (channel id, message id).
        """
        if where is None:
            if not record.origin.chat_id.isdigit():
                log.warning("job %s finished but has no channel to report to", record.id)
                return None
            where = (int(record.origin.chat_id), 0)
        channel_id, message_id = where
        uploads: list[render.Upload] = []
        view: discord.ui.View | None = None
        if record.status is Status.done:
            uploads, notes = await self._uploads(record, channel_id)
            content, view = render.result(record, notes), buttons.result_view(record)
        elif record.status is Status.failed:
            content, view = render.finished(record), buttons.failed_view(record)
        else:
            content = render.finished(record)
        if message_id:
            try:
                await self._message(channel_id, message_id).edit(
                    content=content,
                    attachments=render.files(uploads),
                    view=view,
                    allowed_mentions=NO_MENTIONS,
                )
                return channel_id, message_id
            except discord.NotFound:
                log.info("status message of job %s is gone; posting its result anew", record.id)
        channel = self.client.get_partial_messageable(channel_id)
        message = await channel.send(content, files=render.files(uploads), view=view, allowed_mentions=NO_MENTIONS)
        await self.service.history.set_status_message(record.id, f"{channel_id}:{message.id}")
        return channel_id, message.id

    async def _post_before_after(self, record: JobRecord, where: tuple[int, int]) -> None:
        """--show-source: the before | after sheet of each image, answering the result."""
        pictures, indexes = [], []
        shown, _ = gate.split(record.outputs, gate.age_restricted(self.client, where[0]))
        for output in shown:
            if render.is_still(output.media_type):
                try:
                    sheet = await self.service.before_after(record.origin, record.id, output.index)
                except Refusal as refusal:
                    log.info("no before/after for job %s #%s: %s", record.id, output.index, refusal)
                    continue
                name = gate.named(f"before-after-{record.id}-{output.index + 1}.png", output.spoiler)
                pictures.append((name, sheet))
                indexes.append(output.index)
        if pictures:
            await self._post_pictures(where, render.before_after(record, indexes), pictures)

    async def _post_compare_sheet(self, record: JobRecord) -> None:
        """When ``record`` finished its --compare set: the side-by-side sheet, once, answering the
        first job's message (its result, once delivered)."""
        sheet = await self.service.compare_sheet(record.compare_of)
        if sheet is None:
            return
        first = await self.service.history.job(record.compare_of) or record
        where = parse_location(first.status_message) if first.status_message else None
        if where is None:
            if not record.origin.chat_id.isdigit():
                return
            where = (int(record.origin.chat_id), 0)
        outputs = [o for job in await self.service.history.compared(record.compare_of) for o in job.outputs]
        if gate.split(outputs, gate.age_restricted(self.client, where[0]))[1]:
            return  # a flagged result is in it: never side by side in a channel that isn't age-restricted
        models = [first.request.model, *first.request.compare]
        name = gate.named(f"compare-{first.id}.png", any(o.spoiler for o in outputs))
        await self._post_pictures(where, render.compare(models), [(name, sheet)])

    async def _post_pictures(self, where: tuple[int, int], content: str, pictures: list[tuple[str, bytes]]) -> None:
        """A channel message with pictures the bot made, answering the message at ``where`` (if any)."""
        channel_id, message_id = where
        uploads = await asyncio.to_thread(render.fit_pictures, pictures, self._upload_limit(channel_id))
        reference = None
        if message_id:
            reference = self._message(channel_id, message_id).to_reference(fail_if_not_exists=False)
        await self.client.get_partial_messageable(channel_id).send(
            content, files=render.files(uploads), reference=reference, allowed_mentions=NO_MENTIONS
        )

    async def _uploads(self, record: JobRecord, channel_id: int) -> tuple[list[render.Upload], list[str]]:
        shown, held = gate.split(record.outputs, gate.age_restricted(self.client, channel_id))

        def load() -> tuple[list[render.Upload], list[str]]:
            found, missing = [], []
            for output in shown:
                try:
                    found.append((output, output.path.read_bytes()))
                except OSError:
                    missing.append(output.path.name)
            uploads, notes = render.fit(found, self._upload_limit(channel_id))
            if missing:
                notes.append(f"{len(missing)} file(s) could not be read back from the history.")
            if held:
                notes.append(gate.held_back(len(held)))
            return uploads, notes

        return await asyncio.to_thread(load)

    def _upload_limit(self, channel_id: int) -> int | None:
        if channel_id in self.upload_limits:
            return self.upload_limits[channel_id]
        guild = getattr(self.client.get_channel(channel_id), "guild", None)
        return guild.filesize_limit if guild is not None else None

    def _message(self, channel_id: int, message_id: int) -> discord.PartialMessage:
        return self.client.get_partial_messageable(channel_id).get_partial_message(message_id)


def parse_location(text: str) -> tuple[int, int] | None:
    """``"channel:message"`` as stored in the history."""
    channel, _, message = text.partition(":")
    if channel.isdigit() and message.isdigit():
        return int(channel), int(message)
    log.warning("unreadable status message location %r", text)
    return None
