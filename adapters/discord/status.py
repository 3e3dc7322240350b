"""Status messages on Discord: how the core's ``StatusTracker`` (bot.status: throttling, order,
waiting for the post, the message's place in the history) shows in a channel.

One status message per job, posted with the bot token ("Queued — position 3 · ready in about
20 s"), edited as the job waits and runs, with the live preview as its attachment (each preview
replaces the last), and finally turned into the result message (images or clips, a short line,
the persistent buttons): the result's files replace the preview. With ``--show-source`` a message
with the before | after sheets answers the result; the job of a ``--compare`` set that finishes
last posts the side-by-side sheet (once), answering the set's first job's message.

The history keeps the message's ``channel:message``, so a job recovered after a restart still
lands in its message, and no edit ever needs the interaction token (which expires after 15 minutes).
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import discord

from adapters.discord import buttons, gate, render
from bot.history import JobRecord
from bot.jobs import Job, Status
from bot.service import Refusal, Service
from bot.status import PREVIEW_INTERVAL, Place, StatusTracker

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True)
class Where:
    """Where a status message goes: the channel, answering a message (if any)."""

    channel: discord.abc.Messageable
    reply_to: discord.Message | None = None
    upload_limit: int | None = None  # the interaction's attachment_size_limit, when known


class StatusBoard:
    """The Discord face of the status tracker (its ``Screen``); ``on_event`` is the service's listener."""

    def __init__(
        self,
        client: discord.Client,
        service: Service,
        *,
        interval: float = 1.5,
        preview_interval: float = PREVIEW_INTERVAL,
        patience: float = 60.0,
    ):
        self.client = client
        self.service = service
        self.upload_limits: dict[int, int] = {}  # channel id → attachment_size_limit last seen there
        self.online = asyncio.Event()  # set once the client is logged in (events may come earlier)
        self.tracker: StatusTracker[Where] = StatusTracker(
            self,
            service.history,
            interval=interval,
            preview_interval=preview_interval,
            patience=patience,
            online=self.online,
        )
        self.on_event = self.tracker.on_event
        self.abandon = self.tracker.abandon
        self.close = self.tracker.close

    async def post(
        self,
        job: Job,
        channel: discord.abc.Messageable,
        position: int,
        *,
        reply_to: discord.Message | None = None,
        upload_limit: int | None = None,
    ) -> Place:
        """Post a job's status message ("Queued — position 3") and remember where it is."""
        return await self.tracker.post(job, position, Where(channel, reply_to, upload_limit))

    # the Screen --------------------------------------------------------------------------------

    async def send(self, job: Job, line: str, where: Where) -> Place:
        content, view = render.status(render.header(job), line), buttons.status_view(job.id)
        if where.reply_to is None:
            message = await where.channel.send(content, view=view, allowed_mentions=NO_MENTIONS)
        else:
            reference = where.reply_to.to_reference(fail_if_not_exists=False)
            message = await where.channel.send(content, view=view, reference=reference, allowed_mentions=NO_MENTIONS)
        if where.upload_limit:
            self.upload_limits[message.channel.id] = where.upload_limit
        return Place(message.channel.id, message.id)

    async def edit(self, place: Place, record: JobRecord, line: str) -> None:
        await self._message(place.chat, place.message).edit(
            content=render.status(render.header(record), line), allowed_mentions=NO_MENTIONS
        )

    async def preview(self, place: Place, record: JobRecord, line: str, jpeg: bytes) -> Place:
        # The content filter sees results, not previews: outside age-restricted channels a preview
        # shows behind a spoiler.
        name = gate.named(f"preview-{record.id}.jpg", not gate.age_restricted(self.client, place.chat))
        await self._message(place.chat, place.message).edit(
            content=render.status(render.header(record), line),
            attachments=[discord.File(io.BytesIO(jpeg), filename=name)],
            allowed_mentions=NO_MENTIONS,
        )
        return place

    async def finish(self, place: Place | None, record: JobRecord, line: str) -> Place | None:
        """The status message becomes the result (its files replace the preview); the before | after
        and compare sheets follow."""
        shown: Place | None = None
        try:
            shown = await self._show(record, place)
            if shown is not None and record.status is Status.done and record.request.show_source:
                await self._post_before_after(record, shown)
        except Exception:
            log.exception("could not deliver job %s to Discord", record.id)
        if record.compare_of is not None:
            try:
                await self._post_compare_sheet(record)
            except Exception:
                log.exception("could not post the compare sheet of job %s", record.compare_of)
        return shown

    # inside ------------------------------------------------------------------------------------

    async def _show(self, record: JobRecord, place: Place | None) -> Place | None:
        """Turn the status message into the result (or post the result anew when it is gone).

        Returns where the result is.
        """
        if place is None:
            if not record.origin.chat_id.isdigit():
                log.warning("job %s finished but has no channel to report to", record.id)
                return None
            place = Place(int(record.origin.chat_id), 0)
        channel_id, message_id = place.chat, place.message
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
                return place
            except discord.NotFound:
                log.info("status message of job %s is gone; posting its result anew", record.id)
        channel = self.client.get_partial_messageable(channel_id)
        files = render.files(uploads)
        if view is None:
            message = await channel.send(content, files=files, allowed_mentions=NO_MENTIONS)
        else:
            message = await channel.send(content, files=files, view=view, allowed_mentions=NO_MENTIONS)
        return Place(channel_id, message.id)

    async def _post_before_after(self, record: JobRecord, where: Place) -> None:
        """--show-source: the before | after sheet of each image, answering the result."""
        pictures, indexes = [], []
        shown, _ = gate.split(record.outputs, gate.age_restricted(self.client, where.chat))
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
        if record.compare_of is None:
            return
        sheet = await self.service.compare_sheet(record.compare_of)
        if sheet is None:
            return
        first = await self.service.history.job(record.compare_of) or record
        where = Place.parse(first.status_message)
        if where is None:
            if not record.origin.chat_id.isdigit():
                return
            where = Place(int(record.origin.chat_id), 0)
        outputs = [o for job in await self.service.history.compared(record.compare_of) for o in job.outputs]
        if gate.split(outputs, gate.age_restricted(self.client, where.chat))[1]:
            return  # a flagged result is in it: never side by side in a channel that isn't age-restricted
        models = [first.request.model, *first.request.compare]
        name = gate.named(f"compare-{first.id}.png", any(o.spoiler for o in outputs))
        await self._post_pictures(where, render.compare(models), [(name, sheet)])

    async def _post_pictures(self, where: Place, content: str, pictures: list[tuple[str, bytes]]) -> None:
        """A channel message with pictures the bot made, answering the message at ``where`` (if any)."""
        uploads = await asyncio.to_thread(render.fit_pictures, pictures, self._upload_limit(where.chat))
        channel, files = self.client.get_partial_messageable(where.chat), render.files(uploads)
        if not where.message:
            await channel.send(content, files=files, allowed_mentions=NO_MENTIONS)
            return
        reference = self._message(where.chat, where.message).to_reference(fail_if_not_exists=False)
        await channel.send(content, files=files, reference=reference, allowed_mentions=NO_MENTIONS)

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
