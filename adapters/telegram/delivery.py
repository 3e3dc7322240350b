"""Job events → the chat: the status message follows the job, results arrive as photos with buttons.

One result is a photo with its keyboard. Several are an album, then one message with a row of
buttons per image (albums cannot carry a keyboard). Clips (Animate) are sent as animations.
``📄 Original`` sends the lossless file from the history as a document.
"""

from __future__ import annotations

import asyncio
import html
import logging

from telegram import Bot, InputFile, InputMediaPhoto
from telegram.constants import ParseMode
from telegram.error import TelegramError

from adapters.telegram import outbox, previews, render
from adapters.telegram.keyboards import album_keyboard, result_keyboard
from adapters.telegram.status import StatusBoard
from bot.history import History, JobRecord, OutputRecord
from bot.jobs import Event, Status
from bot.service import Refusal

log = logging.getLogger(__name__)

DOCUMENT_MAX_BYTES = 50 * 1024 * 1024  # sendDocument's upload limit on the official server
ALBUM_MAX = 10


def is_still(media_type: str) -> bool:
    """A picture to show as a photo (an animated GIF or a video is a clip)."""
    return media_type.startswith("image/") and media_type != "image/gif"


class Delivery:
    def __init__(self, bot: Bot, history: History, board: StatusBoard):
        self._bot = bot
        self._history = history
        self._board = board

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
                await outbox.reply(self._bot, record.origin.chat_id, record.origin.message_id,
                                   f"⚠️ {record.error or 'That did not work out.'}")
        except TelegramError as error:
            log.warning("delivering %s of job %s to Telegram failed: %s", event.status.value, record.id,
                        error)

    async def send_results(self, record: JobRecord) -> None:
        chat = int(record.origin.chat_id)
        reply = outbox.reply_to(record.origin.message_id)
        pictures = [o for o in record.outputs if is_still(o.media_type)]
        clips = [o for o in record.outputs if not is_still(o.media_type)]
        count = len(record.outputs)
        if len(pictures) == 1 and not record.request.show_source:
            output = pictures[0]
            await self._bot.send_photo(
                chat, await self._photo(output), caption=render.caption(record, output, count),
                parse_mode=ParseMode.HTML, reply_markup=result_keyboard(record.id, output.index),
                reply_parameters=reply,
            )
        elif pictures:
            await self._send_album(record, pictures, count)
        for clip in clips:
            data = await asyncio.to_thread(clip.path.read_bytes)
            await self._bot.send_animation(
                chat, InputFile(data, filename=f"{record.id}-{clip.index + 1}{clip.path.suffix}"),
                caption=render.caption(record, clip, count), parse_mode=ParseMode.HTML,
                reply_markup=result_keyboard(record.id, clip.index, image=False), reply_parameters=reply,
            )
        if not record.outputs:
            await outbox.reply(self._bot, chat, record.origin.message_id, "✅ Done, but nothing came out.")

    async def _send_album(self, record: JobRecord, pictures: list[OutputRecord], count: int) -> None:
        chat = int(record.origin.chat_id)
        media = []
        if record.request.show_source:
            source = await asyncio.to_thread(self._history.source_path(record.id).read_bytes)
            media.append(InputMediaPhoto(InputFile(await asyncio.to_thread(previews.preview, source),
                                                   filename=f"{record.id}-source.png", attach=True),
                                         caption="Source"))
        for output in pictures:
            media.append(InputMediaPhoto(await self._photo(output, attach=True), parse_mode=ParseMode.HTML,
                                         caption=render.caption(record, output, count)))
        chunks = [media[start:start + ALBUM_MAX] for start in range(0, len(media), ALBUM_MAX)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # an album needs two items
            chunks[-1].insert(0, chunks[-2].pop())
        first = None
        for chunk in chunks:
            sent = await self._bot.send_media_group(
                chat, chunk, reply_parameters=outbox.reply_to(record.origin.message_id))
            first = first or sent[0]
        prompt = html.escape(record.request.prompt[:200]) or "your picture"
        await outbox.reply(
            self._bot, chat, first.message_id if first else record.origin.message_id,
            f"{len(pictures)} takes on <b>{prompt}</b> — buttons by image number "
            f"(job <code>{record.id}</code>):", markup=album_keyboard(record.id, [o.index for o in pictures]),
            html=True,
        )

    async def _photo(self, output: OutputRecord, attach: bool = False) -> InputFile:
        """The output as a photo upload (``attach``: as an album item)."""
        data = await asyncio.to_thread(output.path.read_bytes)
        data = await asyncio.to_thread(previews.preview, data)
        extension = "jpg" if data.startswith(b"\xff\xd8") else "png"
        return InputFile(data, filename=f"{output.job_id}-{output.index + 1}.{extension}", attach=attach)

    async def send_original(self, record: JobRecord, index: int, chat_id: int, reply_to: int | None) -> None:
        """The lossless output (PNG with its parameters) as a document. Raises Refusal."""
        output = next((o for o in record.outputs if o.index == index), None)
        if record.status is not Status.done or output is None:
            raise Refusal("That result isn't ready (or has no such image).")
        try:
            data = await asyncio.to_thread(output.path.read_bytes)
        except OSError:
            raise Refusal("That file is no longer on the server.") from None
        if len(data) > DOCUMENT_MAX_BYTES:
            raise Refusal(f"That file is too big to send through Telegram ({render.mb(len(data))}).")
        await self._bot.send_document(
            chat_id, InputFile(data, filename=f"remix-{record.id}-{index + 1}{output.path.suffix}"),
            caption=f"📄 Original of job {record.id} #{index + 1}: lossless, with its settings embedded.",
            disable_content_type_detection=True, reply_parameters=outbox.reply_to(reply_to),
        )
