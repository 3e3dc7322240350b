"""A fake Telegram Bot API server: aiohttp on 127.0.0.1, driven by the test.

The real python-telegram-bot client talks to it (``base_url`` / ``base_file_url``). The test plays
the users: it feeds updates (messages with photos, documents, albums, replies; button presses)
that the bot long-polls with getUpdates. Every call the bot makes is recorded; messages the bot
sends are kept as ``ChatMessage`` with their uploaded files (parsed from multipart) and their
edits, so tests assert on what a person in the chat would see. ``fail_next`` makes the next calls
fail (429 with ``retry_after``, "message is not modified", a broken getFile, …).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

BOT_ID = 700000001
BOT_USERNAME = "RemixTestBot"
BOT_USER = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Remix",
    "username": BOT_USERNAME,
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}

PHOTO_MAX_BYTES = 10 * 1024 * 1024  # sendPhoto: at most 10 MB, width + height ≤ 10000, ratio ≤ 20
PHOTO_MAX_SIDES = 10000
PHOTO_MAX_RATIO = 20
# Parameters PTB sends JSON-encoded inside form fields.
JSON_FIELDS = (
    "reply_markup",
    "reply_parameters",
    "media",
    "commands",
    "entities",
    "caption_entities",
    "link_preview_options",
    "allowed_updates",
    "scope",
)
# Methods a 429 storm hits (what Telegram rate-limits: sending and editing).
LIMITED = (
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendMediaGroup",
    "sendAnimation",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "answerCallbackQuery",
    "sendChatAction",
)
# what a ChatMember of each status carries besides ``status`` and ``user`` (all of it, as Telegram sends it)
_ADMIN_RIGHTS = (
    "can_be_edited can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members "
    "can_promote_members can_change_info can_invite_users can_post_stories can_edit_stories can_delete_stories"
)
_RESTRICTIONS = (
    "can_change_info can_invite_users can_pin_messages can_send_messages can_send_polls can_send_other_messages "
    "can_add_web_page_previews can_manage_topics can_send_audios can_send_documents can_send_photos "
    "can_send_videos can_send_video_notes can_send_voice_notes can_edit_tag can_react_to_messages"
)
MEMBER_FIELDS: dict[str, dict[str, Any]] = {
    "creator": {"is_anonymous": False},
    "administrator": {"is_anonymous": False, **dict.fromkeys(_ADMIN_RIGHTS.split(), True)},
    "restricted": {"is_member": True, "until_date": 0, **dict.fromkeys(_RESTRICTIONS.split(), False)},
}
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, tuple[bytes, str]]  # multipart field → (content, filename)
    status: int = 200


@dataclass
class ChatMessage:
    """A message in a chat, as the fake keeps it (sent by a user or by the bot)."""

    chat_id: int
    message_id: int
    sender_id: int
    kind: str  # "text", "photo", "document", "animation"
    text: str = ""  # the text, or the caption
    markup: dict | None = None
    reply_to: int | None = None
    data: bytes | None = None  # the file the bot uploaded
    filename: str = ""
    media_group_id: str | None = None
    edits: list[str] = field(default_factory=list)
    deleted: bool = False
    raw: dict = field(default_factory=dict)  # the JSON Telegram would deliver
    sent_text: str = ""  # as first sent, before any edit
    sent_markup: dict | None = None
    spoiler: bool = False  # sent with has_spoiler (a photo, an album item, an animation)

    def __post_init__(self) -> None:
        self.sent_text = self.text
        self.sent_markup = self.markup

    @property
    def from_bot(self) -> bool:
        return self.sender_id == BOT_ID

    @property
    def buttons(self) -> list[dict]:
        return [button for row in (self.markup or {}).get("inline_keyboard", []) for button in row]

    @property
    def callbacks(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def callback(self, prefix: str) -> str:
        """The callback data of the first button whose data starts with ``prefix`` (e.g. "reroll:")."""
        for data in self.callbacks:
            if data.startswith(prefix):
                return data
        raise AssertionError(f"no button {prefix!r} on message {self.message_id}: {self.callbacks}")

    def image(self) -> Image.Image:
        assert self.data is not None, f"message {self.message_id} carries no file"
        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image


def _photo_sizes(data: bytes, file_ids: list[str]) -> list[dict]:
    """PhotoSize entries: a small thumbnail first, the full picture last (as Telegram sends them)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # not an image, or one too large to open: Telegram would still describe it
        width, height = 100, 100
    sizes = [
        {
            "file_id": file_ids[-1],
            "file_unique_id": f"u{file_ids[-1]}",
            "width": width,
            "height": height,
            "file_size": len(data),
        }
    ]
    if len(file_ids) > 1:
        sizes.insert(
            0,
            {"file_id": file_ids[0], "file_unique_id": f"u{file_ids[0]}", "width": 90, "height": 90, "file_size": 1000},
        )
    return sizes


def thumbnail_of(data: bytes) -> bytes | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            small = image.convert("RGB")
            small.thumbnail((90, 90))
            out = io.BytesIO()
            small.save(out, format="JPEG")
            return out.getvalue()
    except Exception:
        return None


class FakeTelegram:
    def __init__(self, token: str):
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], ChatMessage] = {}
        self.files: dict[str, bytes] = {}
        self.changed = asyncio.Condition()
        self.admins: set[int] = set()  # users getChatMember calls "creator" in every chat
        self.statuses: dict[tuple[int, int], str] = {}  # (chat, user) → getChatMember status, over ``admins``
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._group_ids = itertools.count(1)
        self._failures: dict[str, deque[dict]] = {}
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.port = 0
        self.photo_max_bytes = PHOTO_MAX_BYTES  # sendPhoto refuses bigger photos, as Telegram does

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True  # long polls still waiting return now
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # the people in the chats -----------------------------------------------------------------

    @staticmethod
    def person(user_id: int, name: str) -> dict:
        return {"id": user_id, "is_bot": False, "first_name": name, "username": name.lower()}

    @staticmethod
    def private(user: dict) -> dict:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    @staticmethod
    def group(chat_id: int = -1001000000001, title: str = "Remix club") -> dict:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def add_file(self, data: bytes) -> str:
        file_id = f"file{next(self._file_ids)}"
        self.files[file_id] = data
        return file_id

    def send(
        self,
        chat: dict,
        user: dict,
        *,
        text: str | None = None,
        caption: str | None = None,
        photo: bytes | None = None,
        document: bytes | None = None,
        filename: str = "picture.png",
        mime_type: str = "image/png",
        reply_to: ChatMessage | None = None,
        media_group_id: str | None = None,
        file_size: int | None = None,
        push: bool = True,
    ) -> ChatMessage:
        """A user's message arrives (pushed as an update unless ``push`` is False)."""
        message_id = next(self._message_ids)
        raw: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": user}
        kind = "text"
        if text is not None:
            raw["text"] = text
            raw.update(_entities("entities", text))
        if caption is not None:
            raw["caption"] = caption
            raw.update(_entities("caption_entities", caption))
        if photo is not None:
            kind = "photo"
            small = thumbnail_of(photo)
            ids = ([self.add_file(small)] if small else []) + [self.add_file(photo)]
            raw["photo"] = _photo_sizes(photo, ids)
            if file_size is not None:
                raw["photo"][-1]["file_size"] = file_size
        if document is not None:
            kind = "document"
            file_id = self.add_file(document)
            raw["document"] = {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_name": filename,
                "mime_type": mime_type,
                "file_size": file_size or len(document),
            }
        if media_group_id is not None:
            raw["media_group_id"] = media_group_id
        if reply_to is not None:
            raw["reply_to_message"] = reply_to.raw
        message = ChatMessage(
            chat["id"],
            message_id,
            user["id"],
            kind,
            text or caption or "",
            reply_to=reply_to.message_id if reply_to else None,
            media_group_id=media_group_id,
            raw=raw,
        )
        self.messages[(chat["id"], message_id)] = message
        if push:
            self.push({"message": raw})
        return message

    def album(
        self,
        chat: dict,
        user: dict,
        pictures: list[bytes],
        caption: str,
        *,
        caption_on: int = 0,
        as_documents: bool = False,
    ) -> list[ChatMessage]:
        """An album: one message per picture, the caption on one of them, all in one getUpdates batch."""
        group_id = f"album{next(self._group_ids)}"
        messages = []
        for i, data in enumerate(pictures):
            kind = {"document": data} if as_documents else {"photo": data}
            messages.append(
                self.send(
                    chat,
                    user,
                    caption=caption if i == caption_on else None,
                    media_group_id=group_id,
                    push=False,
                    **kind,
                )
            )
        for message in messages:
            self.push({"message": message.raw})
        return messages

    def press(self, user: dict, message: ChatMessage, data: str) -> str:
        """A user taps a button (any data: a real client only sends what the keyboard has)."""
        query_id = f"q{next(self._query_ids)}"
        self.push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "chat_instance": "ci1",
                    "data": data,
                    "message": message.raw,
                }
            }
        )
        return query_id

    def push(self, update: dict) -> None:
        update = dict(update, update_id=next(self._update_ids))
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())

    # what the bot did --------------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method and call.status == 200]

    def answer_to(self, query_id: str) -> Call | None:
        return next(
            (c for c in self.calls_of("answerCallbackQuery") if c.params.get("callback_query_id") == query_id), None
        )

    def bot_messages(self, chat_id: int, kind: str | None = None) -> list[ChatMessage]:
        return [
            m
            for (chat, _), m in sorted(self.messages.items())
            if chat == chat_id and m.from_bot and (kind is None or m.kind == kind)
        ]

    def replies_to(self, message: ChatMessage, kind: str | None = None) -> list[ChatMessage]:
        return [m for m in self.bot_messages(message.chat_id, kind) if m.reply_to == message.message_id]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        """Until ``predicate()`` is truthy (re-checked after every call the bot makes); returns it."""
        async with self.changed:
            try:
                return await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
            except TimeoutError:
                recent = [
                    (c.method, c.status, c.params.get("text") or c.params.get("caption")) for c in self.calls[-15:]
                ]
                raise AssertionError(f"timed out waiting for {what or predicate}; last calls: {recent}") from None

    def fail_next(
        self, method: str, count: int = 1, *, code: int = 429, retry_after: int = 1, description: str = ""
    ) -> None:
        """The next ``count`` calls of ``method`` ("*": any sending or editing method) fail."""
        if code == 429:
            failure = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            }
        else:
            failure = {"ok": False, "error_code": code, "description": description}
        self._failures.setdefault(method, deque()).extend([failure] * count)

    # the Bot API ------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _read(request)
        call = Call(method, params, files)
        failure = self._take_failure(method)
        if failure is not None:
            call.status = failure["error_code"]
            self.calls.append(call)
            await self._notify()
            return web.json_response(failure, status=failure["error_code"])
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            call.status = 404
            self.calls.append(call)
            return _error(404, "Not Found")
        try:
            result = await handler(params, files)
        except ApiError as error:
            call.status = error.code
            self.calls.append(call)
            await self._notify()
            return _error(error.code, error.description)
        self.calls.append(call)
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    def _take_failure(self, method: str) -> dict | None:
        for key in (method, "*" if method in LIMITED else None):
            queue = self._failures.get(key) if key else None
            if queue:
                return queue.popleft()
        return None

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        if file_id not in self.files:
            return web.Response(status=404)
        self.calls.append(Call("download", {"file_id": file_id}, {}))
        await self._notify()
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _m_getMe(self, params, files):
        return BOT_USER

    async def _m_deleteWebhook(self, params, files):
        return True

    async def _m_setMyCommands(self, params, files):
        return True

    async def _m_sendChatAction(self, params, files):
        return True

    async def _m_answerCallbackQuery(self, params, files):
        return True

    async def _m_getUpdates(self, params, files):
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout:
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait_for(lambda: bool(self._updates) or self._closing), timeout)
                except TimeoutError:
                    pass
        return list(self._updates)

    async def _m_getFile(self, params, files):
        file_id = params.get("file_id", "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"photos/{file_id}",
        }

    async def _m_getChatMember(self, params, files):
        user_id = int(params["user_id"])
        status = "creator" if user_id in self.admins else "member"
        status = self.statuses.get((int(params["chat_id"]), user_id), status)
        user = {"id": user_id, "is_bot": False, "first_name": "someone"}
        return {"status": status, "user": user, **MEMBER_FIELDS.get(status, {})}

    async def _m_deleteMessage(self, params, files):
        message = self._message(params)
        message.deleted = True
        return True

    async def _m_sendMessage(self, params, files):
        return self._bot_message(params, "text", params.get("text", "")).raw

    async def _m_sendPhoto(self, params, files):
        data, _ = _file_of(params.get("photo"), files, self.files, field_name="photo")
        self._check_photo(data)
        return self._bot_upload(params, files, "photo").raw

    async def _m_sendDocument(self, params, files):
        return self._bot_upload(params, files, "document").raw

    async def _m_sendAnimation(self, params, files):
        return self._bot_upload(params, files, "animation").raw

    async def _m_sendMediaGroup(self, params, files):
        group_id = f"sent{next(self._group_ids)}"
        sent = []
        for item in params["media"]:
            if item["type"] == "photo":
                self._check_photo(_file_of(item["media"], files, self.files)[0])
        for item in params["media"]:
            data, filename = _file_of(item["media"], files, self.files)
            item_params = dict(
                params,
                caption=item.get("caption", ""),
                parse_mode=item.get("parse_mode"),
                has_spoiler=item.get("has_spoiler", False),
            )
            message = self._bot_message(
                item_params,
                item["type"],
                item.get("caption", ""),
                data=data,
                filename=filename,
                media_group_id=group_id,
            )
            sent.append(message.raw)
        if not 2 <= len(sent) <= 10:
            raise ApiError(400, "Bad Request: media group must contain 2-10 items")
        return sent

    async def _m_editMessageText(self, params, files):
        message = self._message(params)
        text = _plain(params.get("text", ""), params.get("parse_mode"))
        markup = params.get("reply_markup")
        if text == message.text and markup == message.markup:
            raise ApiError(400, NOT_MODIFIED)
        message.edits.append(text)
        message.text, message.markup = text, markup
        message.raw.update(text=text)
        message.raw.pop("reply_markup", None)
        if markup:
            message.raw["reply_markup"] = markup
        return message.raw

    async def _m_editMessageReplyMarkup(self, params, files):
        message = self._message(params)
        message.markup = params.get("reply_markup")
        return message.raw

    # plumbing ---------------------------------------------------------------------------------

    def _check_photo(self, data: bytes | None) -> None:
        """Telegram's sendPhoto limits: the file's size, the sum of its sides, its aspect ratio."""
        if data is None:
            return
        if len(data) > self.photo_max_bytes:
            raise ApiError(400, "Bad Request: file is too big")
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        if width + height > PHOTO_MAX_SIDES or max(width, height) > PHOTO_MAX_RATIO * min(width, height):
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")

    def _message(self, params: dict) -> ChatMessage:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages or self.messages[key].deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        return self.messages[key]

    def _bot_upload(self, params: dict, files: dict[str, tuple[bytes, str]], kind: str) -> ChatMessage:
        data, filename = _file_of(params.get(kind), files, self.files, field_name=kind)
        return self._bot_message(params, kind, params.get("caption", ""), data=data, filename=filename)

    def _bot_message(
        self,
        params: dict,
        kind: str,
        text: str,
        *,
        data: bytes | None = None,
        filename: str = "",
        media_group_id: str | None = None,
    ) -> ChatMessage:
        chat_id = int(params["chat_id"])
        message_id = next(self._message_ids)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "x"}
        raw: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": BOT_USER}
        if kind == "text":
            raw["text"] = _plain(text, params.get("parse_mode"))
        elif text:
            raw["caption"] = _plain(text, params.get("parse_mode"))
        if data is not None:
            file_id = self.add_file(data)
            described = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data)}
            if kind == "photo":
                raw["photo"] = _photo_sizes(data, [file_id])
            elif kind == "animation":
                raw["animation"] = dict(described, width=64, height=64, duration=1)
                raw["document"] = dict(described, file_name=filename)
            else:
                raw["document"] = dict(described, file_name=filename, mime_type="image/png")
        markup = params.get("reply_markup")
        if markup:
            raw["reply_markup"] = markup
        if media_group_id:
            raw["media_group_id"] = media_group_id
        if params.get("has_spoiler") in (True, "true", "True"):
            raw["has_media_spoiler"] = True
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") or params.get("reply_to_message_id")
        message = ChatMessage(
            chat_id,
            message_id,
            BOT_ID,
            kind,
            raw.get("text") or raw.get("caption", ""),
            markup=markup,
            reply_to=int(reply_to) if reply_to else None,
            data=data,
            filename=filename,
            media_group_id=media_group_id,
            raw=raw,
            spoiler=params.get("has_spoiler") in (True, "true", "True"),
        )
        self.messages[(chat_id, message_id)] = message
        return message


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)


class ApiError(Exception):
    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


def _entities(key: str, text: str) -> dict:
    """A bot_command entity for a leading /command, as Telegram marks it."""
    if not text.startswith("/"):
        return {}
    length = len(text.split()[0]) if text.split() else 1
    return {key: [{"type": "bot_command", "offset": 0, "length": length}]}


def _plain(text: str, parse_mode: str | None) -> str:
    """A caption as a client shows it (HTML tags stripped, entities unescaped)."""
    if parse_mode != "HTML":
        return text
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _file_of(
    value: Any, files: dict[str, tuple[bytes, str]], known: dict[str, bytes], field_name: str = ""
) -> tuple[bytes | None, str]:
    """The bytes a media parameter refers to: an uploaded part (attach://name or the field itself)
    or the id of a file Telegram already has."""
    if isinstance(value, str) and value.startswith("attach://"):
        name = value.removeprefix("attach://")
        return files[name]
    if field_name in files:
        return files[field_name]
    if isinstance(value, str) and value in known:
        return known[value], value
    raise ApiError(400, f"Bad Request: there is no file in the request ({field_name or value!r})")


async def _read(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    """Form, multipart or JSON parameters (JSON-encoded fields decoded), and uploaded files."""
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[bytes, str]] = {}
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.filename is not None:
                files[part.name] = (bytes(await part.read(decode=False)), part.filename)
            else:
                params[part.name] = await part.text()
    elif request.content_type == "application/json":
        params.update(await request.json())
    elif request.can_read_body:
        params.update(await request.post())
    for name in JSON_FIELDS:
        if isinstance(params.get(name), str):
            try:
                params[name] = json.loads(params[name])
            except ValueError:
                pass
    return params, files
