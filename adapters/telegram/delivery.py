"""Job events → the chat: the status message follows the job, results arrive as photos with buttons.

One result is a photo with its keyboard. Several are an album, then one message with a row of
buttons per image (albums cannot carry a keyboard). Clips (Animate: MP4, or GIF) are sent as
animations. A result too big to be a photo (over sendPhoto's 10 MB, or sides over 10000 px) is
shown as a preview and its lossless file follows as a document: nothing is dropped. A transparent
result (✂️ Cut out) is previewed on a checkerboard and its PNG follows as a document, alpha intact.

``--show-source`` adds the core's labelled before | after sheet after each image, and the job of a
``--compare`` set that finishes last brings the side-by-side sheet (once), answering the set's
first status message. ``📄 Original`` sends the lossless file from the history as a document,
``↔️ Before/after`` the sheet of one output (a picture, never a job). What the chat's NSFW policy puts
behind a spoiler (``OutputRecord.spoiler``) is sent with ``has_spoiler``: the result, its before | after
sheet, a compare sheet it is in.
"""

from __future__ import annotations

import asyncio
import html
import logging

from telegram import Bot, InputFile, InputMediaPhoto, Message
from telegram.constants import ParseMode
from telegram.error import TelegramError

from adapters.telegram import outbox, previews, render
from adapters.telegram.keyboards import album_keyboard, result_keyboard
from adapters.telegram.options import Options
from adapters.telegram.status import StatusBoard, place_of
from bot.history import JobRecord, OutputRecord
from bot.jobs import Event, Status
from bot.service import Refusal, Service

log = logging.getLogger(__name__)

DOCUMENT_MAX_BYTES = 50 * 1024 * 1024  # sendDocument's (and sendAnimation's) limit on the official server
ALBUM_MAX = 10
JPEG_MAGIC = b"\xff\xd8"


def is_still(media_type: str) -> bool:
    """A picture to show as a photo (an animated GIF or a video is a clip)."""
    return media_type.startswith("image/") and media_type != "image/gif"


def picture_name(stem: str, data: bytes) -> str:
    """A file name for picture bytes: .jpg for a JPEG preview, else .png."""
    extension = "jpg" if data.startswith(JPEG_MAGIC) else "png"
    return f"{stem}.{extension}"


class Delivery:
    def __init__(self, bot: Bot, service: Service, board: StatusBoard, options: Options):
        self._bot = bot
        self._service = service
        self._history = service.history
        self._board = board
        self._photo_max_bytes = options.photo_max_bytes

    async def on_event(self, record: JobRecord, event: Event) -> None:
        """The service's listener for Telegram jobs (also those recovered after a restart)."""
        await self._board.ready(record.id)
        try:
            has_status = await self._board.show(record, event)
            if event.status is Status.running:
                await self._board.chat_action(record)
            if event.status is Status.done:
                await self.send_results(record)
            elif event.status is Status.failed and not has_status:
                await outbox.reply(
                    self._bot,
                    record.origin.chat_id,
                    record.origin.message_id,
                    f"⚠️ {record.error or 'That did not work out.'}",
                )
        except TelegramError as error:
            log.warning("delivering %s of job %s to Telegram failed: %s", event.status.value, record.id, error)
        if event.status.finished and record.compare_of is not None:
            await self.send_compare_sheet(record)

    async def send_results(self, record: JobRecord) -> None:
        chat = int(record.origin.chat_id)
        reply = outbox.reply_to(record.origin.message_id)
        pictures = [o for o in record.outputs if is_still(o.media_type)]
        clips = [o for o in record.outputs if not is_still(o.media_type)]
        count = len(record.outputs)
        previewed: list[tuple[OutputRecord, int]] = []  # outputs shown shrunk, and the message showing each
        if len(pictures) == 1:
            output = pictures[0]
            photo, whole = await self._photo(output)
            sent = await self._bot.send_photo(
                chat,
                photo,
                caption=render.caption(record, output, count),
                parse_mode=ParseMode.HTML,
                reply_markup=result_keyboard(record.id, output.index),
                reply_parameters=reply,
                has_spoiler=output.spoiler,
            )
            if not whole:
                previewed.append((output, sent.message_id))
        elif pictures:
            previewed += await self._send_album(record, pictures, count)
        for clip in clips:
            await self._send_clip(record, clip, count)
        if not record.outputs:
            await outbox.reply(self._bot, chat, record.origin.message_id, "✅ Done, but nothing came out.")
        for output, shown_in in previewed:
            if not output.spoiler:  # a document can't be hidden behind a spoiler: 📄 Original sends it on request
                await self._send_full_size(record, output, shown_in)
        if record.request.show_source:
            for output in pictures:
                try:
                    await self.send_before_after(record, output.index, chat, record.origin.message_id)
                except Refusal as refusal:
                    log.info("no before/after for job %s #%s: %s", record.id, output.index, refusal)

    async def _send_album(
        self, record: JobRecord, pictures: list[OutputRecord], count: int
    ) -> list[tuple[OutputRecord, int]]:
        """The pictures as albums, then their keyboard. Returns the pictures shown as previews."""
        chat = int(record.origin.chat_id)
        media, wholes = [], []
        for output in pictures:
            photo, whole = await self._photo(output, attach=True)
            wholes.append(whole)
            caption = render.caption(record, output, count)
            media.append(InputMediaPhoto(photo, parse_mode=ParseMode.HTML, caption=caption, has_spoiler=output.spoiler))
        chunks = [media[start : start + ALBUM_MAX] for start in range(0, len(media), ALBUM_MAX)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # an album needs two items
            chunks[-1].insert(0, chunks[-2].pop())
        sent: list[Message] = []
        for chunk in chunks:
            sent += await self._bot.send_media_group(
                chat, chunk, reply_parameters=outbox.reply_to(record.origin.message_id)
            )
        first = sent[0] if sent else None
        prompt = html.escape(record.request.prompt[:200]) or "your picture"
        await outbox.reply(
            self._bot,
            chat,
            first.message_id if first else record.origin.message_id,
            f"{len(pictures)} takes on <b>{prompt}</b> — buttons by image number (job <code>{record.id}</code>):",
            markup=album_keyboard(record.id, [o.index for o in pictures]),
            html=True,
        )
        return [
            (output, message.message_id)
            for output, message, whole in zip(pictures, sent, wholes, strict=False)
            if not whole
        ]

    async def _send_clip(self, record: JobRecord, clip: OutputRecord, count: int) -> None:
        chat = int(record.origin.chat_id)
        data = await asyncio.to_thread(clip.path.read_bytes)
        if len(data) > DOCUMENT_MAX_BYTES:
            await outbox.reply(
                self._bot,
                chat,
                record.origin.message_id,
                f"⚠️ The clip is too big to send through Telegram ({render.mb(len(data))}).",
            )
            return
        await self._bot.send_animation(
            chat,
            InputFile(data, filename=f"{record.id}-{clip.index + 1}{clip.path.suffix}"),
            caption=render.caption(record, clip, count),
            parse_mode=ParseMode.HTML,
            reply_markup=result_keyboard(record.id, clip.index, image=False),
            reply_parameters=outbox.reply_to(record.origin.message_id),
            has_spoiler=clip.spoiler,
        )

    async def _photo(self, output: OutputRecord, attach: bool = False) -> tuple[InputFile, bool]:
        """The output as a photo upload (``attach``: as an album item), and whether it is the whole file."""
        data = await asyncio.to_thread(output.path.read_bytes)
        photo = await asyncio.to_thread(previews.preview, data, self._photo_max_bytes)
        name = picture_name(f"{output.job_id}-{output.index + 1}", photo)
        whole = photo is data  # preview() hands back the file itself when it fits
        return InputFile(photo, filename=name, attach=attach), whole

    async def _send_full_size(self, record: JobRecord, output: OutputRecord, shown_in: int) -> None:
        """The lossless file of a result that was too big to be a photo, answering its preview."""
        chat = int(record.origin.chat_id)
        try:
            data = await asyncio.to_thread(output.path.read_bytes)
        except OSError:
            await outbox.reply(self._bot, chat, shown_in, "⚠️ The full-size file is gone; the photo above is a preview.")
            return
        if await asyncio.to_thread(previews.transparent, data):
            caption = (
                f"✂️ Cut-out of job {record.id} #{output.index + 1} ({output.width}×{output.height}): "
                "a PNG with a transparent background, sent as a file so the transparency survives."
            )
        else:
            caption = (
                f"📄 Full size of job {record.id} #{output.index + 1} ({output.width}×{output.height}): "
                "too big for a photo, so here is the file."
            )
        try:
            await self.send_original(record, output, data, chat, shown_in, caption=caption)
        except Refusal as refusal:
            await outbox.reply(self._bot, chat, shown_in, f"⚠️ {refusal} The photo above is a preview.")

    async def send_original(
        self,
        record: JobRecord,
        output: OutputRecord,
        data: bytes,
        chat_id: int,
        reply_to: int | None,
        *,
        caption: str | None = None,
    ) -> None:
        """The lossless output (PNG with its parameters, from ``Service.original``) as a document.
        Raises Refusal."""
        index = output.index
        if len(data) > DOCUMENT_MAX_BYTES:
            raise Refusal(f"That file is too big to send through Telegram ({render.mb(len(data))}).")
        await self._bot.send_document(
            chat_id,
            InputFile(data, filename=f"remix-{record.id}-{index + 1}{output.path.suffix}"),
            caption=caption or f"📄 Original of job {record.id} #{index + 1}: lossless, with its settings embedded.",
            disable_content_type_detection=True,
            reply_parameters=outbox.reply_to(reply_to),
        )

    async def send_before_after(
        self, record: JobRecord, index: int, chat_id: int, reply_to: int | str | None, sheet: bytes | None = None
    ) -> None:
        """The core's labelled before | after sheet of output ``index`` as a photo. Raises Refusal."""
        if sheet is None:  # --show-source: the bot shows the job's own chat
            sheet = await self._service.before_after(record.origin, record.id, index)
        photo = await asyncio.to_thread(previews.preview, sheet, self._photo_max_bytes)
        which = f" #{index + 1}" if len(record.outputs) > 1 else ""
        await self._bot.send_photo(
            chat_id,
            InputFile(photo, filename=picture_name(f"{record.id}-{index + 1}-before-after", photo)),
            caption=f"↔️ Before / after{which} · {record.request.model}",
            reply_parameters=outbox.reply_to(reply_to),
            has_spoiler=any(o.spoiler for o in record.outputs if o.index == index),
        )

    async def send_compare_sheet(self, record: JobRecord) -> None:
        """When ``record`` finished its --compare set: the side-by-side sheet, once, answering the first
        job's status message (else the request)."""
        try:
            sheet = await self._service.compare_sheet(record.compare_of)
            if sheet is None:
                return
            first = await self._history.job(record.compare_of) or record
            chat, reply_to = place_of(first) or (int(record.origin.chat_id), first.origin.message_id)
            photo = await asyncio.to_thread(previews.preview, sheet, self._photo_max_bytes)
            models = (first.request.model, *first.request.compare)
            jobs = await self._history.compared(record.compare_of)
            await self._bot.send_photo(
                chat,
                InputFile(photo, filename=picture_name(f"{first.id}-compare", photo)),
                caption="Compare: " + " · ".join(models),
                reply_parameters=outbox.reply_to(reply_to),
                has_spoiler=any(o.spoiler for job in jobs for o in job.outputs),
            )
        except (TelegramError, OSError) as error:
            log.warning("sending the compare sheet of job %s failed: %s", record.compare_of, error)
