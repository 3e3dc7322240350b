"""A fake Discord on 127.0.0.1 (aiohttp) that the real discord.py client talks to.

It serves the parts of the REST API the bot uses (login, command sync, interaction callbacks and
webhooks, channel messages with multipart uploads), a CDN for attachments, and a gateway websocket
speaking HELLO / IDENTIFY / READY / HEARTBEAT_ACK that dispatches GUILD_CREATE, INTERACTION_CREATE
and MESSAGE_CREATE. It behaves like Discord where the bot could trip over it:

- JSON responses are typed exactly ``application/json`` (discord.py checks the header verbatim);
- an interaction callback later than ``response_deadline`` (3 s) fails with 10062, a second one
  with 40060; webhook calls on an expired interaction token fail with 50027;
- a 429 carries a ``Via`` header and a JSON ``retry_after`` (or discord.py takes it for a ban);
- uploads over ``attachment_size_limit`` fail with 40005, and interactions carry that limit.

Tests act as users: ``slash``, ``autocomplete``, ``context_menu``, ``submit_modal``, ``press`` and
``say`` send gateway events; ``until`` waits (with a timeout) for what the bot does in reply.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

API = "/api/v10"
APPLICATION_ID = 990000000000000001
GUILD_ID = 990000000000000002
OWNER_ID = 990000000000000003

# permission bits
VIEW, SEND, MANAGE_MESSAGES, ATTACH, HISTORY, ADMINISTRATOR, MANAGE_GUILD = (
    1 << 10,
    1 << 11,
    1 << 13,
    1 << 15,
    1 << 16,
    1 << 3,
    1 << 5,
)
MEMBER_PERMISSIONS = VIEW | SEND | ATTACH | HISTORY | (1 << 31)
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | ADMINISTRATOR | MANAGE_MESSAGES | MANAGE_GUILD
MANAGER_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_GUILD  # Manage Server, without Administrator

OPTION_TYPES = {"string": 3, "integer": 4, "boolean": 5, "user": 6, "channel": 7, "number": 10, "attachment": 11}
SUB_COMMAND = 1


class NotShown(AssertionError):
    """Discord would not offer this command to this member (its ``default_member_permissions``)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON typed exactly ``application/json`` (no charset): discord.py compares the header verbatim."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def error(status: int, code: int, message: str) -> web.Response:
    return json_response({"message": message, "code": code}, status)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    admin: bool = False
    bot: bool = False
    manager: bool = False  # Manage Server without Administrator

    @property
    def permissions(self) -> int:
        return ADMIN_PERMISSIONS if self.admin else MANAGER_PERMISSIONS if self.manager else MEMBER_PERMISSIONS

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }

    def member(self) -> dict[str, Any]:
        permissions = self.permissions
        return {
            "user": self.payload(),
            "roles": [],
            "joined_at": now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
            "permissions": str(permissions),
        }

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    guild_id: int | None  # None: a DM with ``recipient``
    recipient: User | None = None
    nsfw: bool = False  # an age-restricted channel

    def payload(self) -> dict[str, Any]:
        if self.guild_id is None:
            recipients = [self.recipient.payload()] if self.recipient else []
            return {
                "id": str(self.id),
                "type": 1,
                "recipients": recipients,
                "last_message_id": None,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": self.nsfw,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    status: int
    authorized: bool


@dataclass
class RateLimit:
    method: str
    pattern: re.Pattern[str]
    times: int
    retry_after: float


class Interaction:
    """An interaction the fake dispatched, and everything the bot answered to it."""

    def __init__(self, server: FakeDiscord, payload: dict[str, Any], target: dict[str, Any] | None = None):
        self.server = server
        self.payload = payload
        self.id = int(payload["id"])
        self.token = payload["token"]
        self.target = target  # the message a component or modal belongs to
        self.dispatched_at = 0.0
        self.callbacks: list[dict[str, Any]] = []
        self.ack_delay: float | None = None
        self.original: dict[str, Any] | None = None  # the response message (type 4/5)
        self.followups: list[dict[str, Any]] = []
        self.expired = False  # True: the 15-minute token is over (webhook calls fail)
        self.refused_calls: list[str] = []

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.callbacks[0]["data"] if self.response_type == 9 else None

    @property
    def choices(self) -> list[dict[str, Any]]:
        return self.callbacks[0]["data"]["choices"] if self.response_type == 8 else []

    def replies(self) -> list[dict[str, Any]]:
        """Messages shown to the user through this interaction (not the loading placeholder)."""
        found = [self.original] if self.original and not self.original.get("loading") else []
        return found + self.followups

    def texts(self) -> list[str]:
        return [message["content"] for message in self.replies()]

    async def acknowledged(self, timeout: float = 5.0) -> dict[str, Any]:
        await self.server.until(lambda: self.callbacks, timeout, f"an answer to interaction {self.id}")
        return self.callbacks[0]

    async def reply(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first message shown through this interaction that satisfies ``predicate``."""
        return await self.server.until(
            lambda: next((m for m in self.replies() if predicate(m)), None),
            timeout,
            f"a reply to interaction {self.id}; got {self.texts()}",
        )

    async def text(self, timeout: float = 20.0) -> str:
        return (await self.reply(lambda m: bool(m["content"]), timeout))["content"]


class FakeDiscord:
    def __init__(self, *, token: str, attachment_size_limit: int = 10 * 1024 * 1024, response_deadline: float = 3.0):
        self.token = token
        self.attachment_size_limit = attachment_size_limit
        self.response_deadline = response_deadline
        self.bot = User(APPLICATION_ID, "remixbot", bot=True)
        self.owner = User(OWNER_ID, "owner")
        self.general = Channel(990000000000000010, "general", GUILD_ID)
        self.channels: dict[int, Channel] = {self.general.id: self.general}
        self.guilds: dict[int, str] = {GUILD_ID: "Remix Club"}  # id → name
        self.forbidden_channels: set[int] = set()
        self.calls: list[Call] = []
        self.messages: dict[int, dict[str, Any]] = {}  # channel messages, by id
        self.ephemeral: dict[int, dict[str, Any]] = {}  # messages only their user sees, by id
        self.deleted: set[int] = set()
        self.files: dict[int, bytes] = {}  # CDN: attachment id → bytes
        self.interactions: dict[int, Interaction] = {}
        self.overrides: set[str] = set()  # commands a server owner opened to everyone
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.rate_limits: list[RateLimit] = []
        self.rate_limited: list[str] = []
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._sessions: list[web.WebSocketResponse] = []
        self._sequence = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    # lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{attachment}/{filename}", self._cdn)
        app.router.add_get(API + "/users/@me", self._me)
        app.router.add_get(API + "/oauth2/applications/@me", self._application)
        app.router.add_put(API + "/applications/{app}/commands", self._put_commands)
        app.router.add_put(API + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        app.router.add_post(API + "/interactions/{id}/{token}/callback", self._callback)
        app.router.add_post(API + "/webhooks/{app}/{token}", self._followup)
        app.router.add_route("*", API + "/webhooks/{app}/{token}/messages/{message}", self._webhook_message)
        app.router.add_post(API + "/channels/{channel}/messages", self._create_message)
        app.router.add_route("*", API + "/channels/{channel}/messages/{message}", self._channel_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sessions):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return self.base + API

    @property
    def gateway_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/gateway"

    # what tests use ----------------------------------------------------------------------------

    def snowflake(self) -> int:
        return next(self._ids)

    def user(self, name: str, *, admin: bool = False, manager: bool = False) -> User:
        return User(self.snowflake(), name, admin=admin, manager=manager)

    def guild(self, name: str) -> int:
        """Another server the bot is in (add it before the bot connects)."""
        guild_id = self.snowflake()
        self.guilds[guild_id] = name
        return guild_id

    def channel(self, name: str, guild_id: int = GUILD_ID, *, nsfw: bool = False) -> Channel:
        """A server channel (add it before the bot connects); ``nsfw``: age-restricted."""
        channel = Channel(self.snowflake(), name, guild_id, nsfw=nsfw)
        self.channels[channel.id] = channel
        return channel

    def dm(self, user: User) -> Channel:
        channel = Channel(self.snowflake(), f"dm-{user.name}", None, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def upload(self, data: bytes | Path, filename: str | None = None, content_type: str | None = None) -> dict:
        """An attachment a user uploaded (served by the fake CDN)."""
        if isinstance(data, Path):
            filename = filename or data.name
            data = data.read_bytes()
        return self._attachment(filename or "file.bin", data, content_type)

    async def until(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "a condition") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change the bot makes)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    async def connected(self, timeout: float = 10.0) -> None:
        await self.until(lambda: self._ready_sessions(), timeout, "a gateway session")

    def channel_messages(self, channel: Channel) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["channel_id"] == str(channel.id)]

    def bot_messages(self, channel: Channel | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages.values()
            if m["author"]["id"] == str(self.bot.id)
            and "interaction_token" not in m
            and (channel is None or m["channel_id"] == str(channel.id))
        ]

    async def message(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0, what: str = "a message"
    ) -> dict[str, Any]:
        return await self.until(
            lambda: next((m for m in list(self.messages.values()) if predicate(m)), None), timeout, what
        )

    def rate_limit(self, method: str, path: str, *, times: int = 1, retry_after: float = 0.05) -> None:
        """Answer the next ``times`` matching requests with a 429 (as Discord does, with ``Via``)."""
        self.rate_limits.append(RateLimit(method, re.compile(path), times, retry_after))

    def expire(self, interaction: Interaction) -> None:
        """The interaction's 15 minutes are over: its token no longer works."""
        interaction.expired = True

    # acting as users ---------------------------------------------------------------------------

    async def slash(self, name: str, user: User, channel: Channel | None = None, **options: Any) -> Interaction:
        """``name``: a command, or ``"group subcommand"``. Raises NotShown where Discord would not offer
        the command to ``user`` (its ``default_member_permissions``, unless ``override`` opened it)."""
        data = self._command_data(name, 1, channel or self.general, options)
        command, _ = self._command(name.split()[0], 1, channel or self.general)
        required = int(command.get("default_member_permissions") or 0)
        if required and (user.permissions & required) != required and command["name"] not in self.overrides:
            raise NotShown(f"/{command['name']} is not offered to {user.name}")
        return await self._interact(2, data, user, channel or self.general)

    def override(self, name: str) -> None:
        """A server owner opens command ``name`` to everyone (Server Settings → Integrations)."""
        self.overrides.add(name)

    async def autocomplete(
        self, name: str, user: User, focused: str, channel: Channel | None = None, **options: Any
    ) -> Interaction:
        data = self._command_data(name, 1, channel or self.general, options, focused=focused)
        return await self._interact(4, data, user, channel or self.general)

    async def context_menu(self, name: str, user: User, message: dict[str, Any]) -> Interaction:
        channel = self.channels[int(message["channel_id"])]
        data = self._command_data(name, 3, channel, {})
        data.update(target_id=message["id"], resolved={"messages": {message["id"]: message}})
        return await self._interact(2, data, user, channel)

    async def submit_modal(self, opened_by: Interaction, user: User, values: dict[str, str]) -> Interaction:
        """Fill in the modal the bot opened in answer to ``opened_by`` and submit it."""
        modal = opened_by.modal
        assert modal is not None, f"no modal was opened; the bot answered {opened_by.callbacks}"
        rows = []
        for row in modal["components"]:
            inner = row["components"][0] if row["type"] == 1 else row["component"]
            filled = {
                "type": inner["type"],
                "custom_id": inner["custom_id"],
                "value": values.get(inner["custom_id"], ""),
            }
            rows.append({"type": 1, "components": [filled]} if row["type"] == 1 else {"type": 18, "component": filled})
        channel = self.channels[int(opened_by.payload["channel_id"])]
        return await self._interact(5, {"custom_id": modal["custom_id"], "components": rows}, user, channel)

    async def press(self, message: dict[str, Any], custom_id: str, user: User) -> Interaction:
        """Press the button ``custom_id`` on ``message`` (it must be there)."""
        assert custom_id in custom_ids(message), f"{custom_id} is not on the message: {custom_ids(message)}"
        channel = self.channels[int(message["channel_id"])]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, user, channel, message=message)

    async def say(
        self,
        channel: Channel,
        author: User,
        content: str,
        *,
        attachments: list[dict] = (),
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE), optionally as a reply."""
        message = self._message(channel, author, content=content, attachments=list(attachments), reference=reply_to)
        if str(self.bot.id) in content:
            message["mentions"] = [self.bot.payload()]
        if channel.guild_id is not None:
            message["member"] = {k: v for k, v in author.member().items() if k != "user"}
        if reply_to is not None:
            message["referenced_message"] = reply_to
        self.messages[int(message["id"])] = message
        await self._dispatch("MESSAGE_CREATE", message)
        return message

    # gateway -----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        try:
            async for frame in ws:
                if frame.type.name != "TEXT":
                    continue
                message = json.loads(frame.data)
                if message["op"] == 1:
                    self.heartbeats += 1
                    await ws.send_json({"op": 11, "d": None})
                elif message["op"] == 2:
                    if message["d"].get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    self.identifies.append(message["d"])
                    await self._send(ws, "READY", self._ready())
                    for guild_id in self.guilds:
                        await self._send(ws, "GUILD_CREATE", self._guild(guild_id))
                    self._sessions.append(ws)
                    await self._notify()
                elif message["op"] == 6:  # RESUME: start over
                    await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
        finally:
            if ws in self._sessions:
                self._sessions.remove(ws)
            await self._notify()
        return ws

    def _ready_sessions(self) -> list[web.WebSocketResponse]:
        return [ws for ws in self._sessions if not ws.closed]

    async def _send(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        await ws.send_json({"op": 0, "t": event, "s": next(self._sequence), "d": data})

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        sessions = self._ready_sessions()
        assert sessions, "the bot is not connected to the gateway"
        await self._send(sessions[-1], event, data)

    def _ready(self) -> dict[str, Any]:
        return {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in self.guilds],
            "session_id": secrets.token_hex(8),
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APPLICATION_ID), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "shard": [0, 1],
        }

    def _guild(self, guild_id: int) -> dict[str, Any]:
        channels = [c.payload() for c in self.channels.values() if c.guild_id == guild_id]
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": str(MEMBER_PERMISSIONS),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": str(guild_id),
            "name": self.guilds[guild_id],
            "icon": None,
            "owner_id": str(OWNER_ID),
            "roles": [everyone],
            "channels": channels,
            "members": [],
            "member_count": 3,
            "premium_tier": 0,
            "features": [],
            "emojis": [],
            "stickers": [],
            "unavailable": False,
            "large": False,
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "afk_timeout": 300,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": now_iso(),
        }

    # interactions ------------------------------------------------------------------------------

    def _command(self, name: str, kind: int, channel: Channel) -> tuple[dict[str, Any], bool]:
        guild = self.guild_commands.get(channel.guild_id or 0, [])
        for command in guild:
            if command["name"] == name and command.get("type", 1) == kind:
                return command, True
        for command in self.global_commands:
            if command["name"] == name and command.get("type", 1) == kind:
                return command, False
        raise AssertionError(f"the bot registered no command {name!r} of type {kind}")

    def _command_data(
        self, name: str, kind: int, channel: Channel, options: dict[str, Any], focused: str | None = None
    ) -> dict[str, Any]:
        top, _, sub = name.partition(" ")
        command, in_guild = self._command(top, kind, channel)
        schema = {option["name"]: option for option in command.get("options", [])}
        if sub:
            assert sub in schema and schema[sub]["type"] == SUB_COMMAND, f"/{top} has no subcommand {sub!r}"
            schema = {option["name"]: option for option in schema[sub].get("options", [])}
        data: dict[str, Any] = {"id": command["id"], "name": top, "type": kind}
        if in_guild:
            data["guild_id"] = str(channel.guild_id)
        given: list[dict[str, Any]] = []
        attachments: dict[str, Any] = {}
        users: dict[str, User] = {}
        channels: dict[str, Channel] = {}
        for key, value in options.items():
            assert key in schema, f"/{name} has no option {key!r} (it has {sorted(schema)})"
            option = {"name": key, "type": schema[key]["type"]}
            if schema[key]["type"] == OPTION_TYPES["attachment"]:
                attachments[value["id"]] = value
                option["value"] = value["id"]
            elif schema[key]["type"] == OPTION_TYPES["user"]:
                users[str(value.id)] = value
                option["value"] = str(value.id)
            elif schema[key]["type"] == OPTION_TYPES["channel"]:
                channels[str(value.id)] = value
                option["value"] = str(value.id)
            else:
                option["value"] = value
            if key == focused:
                option["focused"] = True
            given.append(option)
        missing = [n for n, option in schema.items() if option.get("required") and n not in options]
        assert not missing or focused, f"/{name} needs {missing}"
        if sub:
            given = [{"name": sub, "type": SUB_COMMAND, **({"options": given} if given else {})}]
        if given:
            data["options"] = given
        resolved: dict[str, Any] = {}
        if attachments:
            resolved["attachments"] = attachments
        if users:
            resolved["users"] = {key: user.payload() for key, user in users.items()}
            if channel.guild_id is not None:
                resolved["members"] = {
                    key: {k: v for k, v in user.member().items() if k != "user"} for key, user in users.items()
                }
        if channels:
            resolved["channels"] = {
                key: {k: channel.payload()[k] for k in ("id", "type", "name", "parent_id", "nsfw")}
                | {"permissions": "0"}
                for key, channel in channels.items()
            }
        if resolved:
            data["resolved"] = resolved
        return data

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        user: User,
        channel: Channel,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        interaction_id = self.snowflake()
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(APPLICATION_ID),
            "type": kind,
            "data": data,
            "token": f"interaction-{interaction_id}-{secrets.token_hex(8)}",
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "locale": "en-US",
            "app_permissions": str(MEMBER_PERMISSIONS),
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if channel.guild_id is not None:
            payload.update(
                guild_id=str(channel.guild_id),
                guild_locale="en-US",
                member=user.member(),
                guild={"id": str(channel.guild_id), "locale": "en-US", "features": []},
                context=0,
                authorizing_integration_owners={"0": str(channel.guild_id)},
            )
        else:
            payload.update(user=user.payload(), context=1, authorizing_integration_owners={"0": str(user.id)})
        if message is not None:
            payload["message"] = message
        interaction = Interaction(self, payload, target=message)
        self.interactions[interaction_id] = interaction
        interaction.dispatched_at = time.monotonic()
        await self._dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _by_token(self, token: str) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            return error(404, 10062, "Unknown interaction")
        delay = time.monotonic() - interaction.dispatched_at
        if interaction.expired or delay > self.response_deadline:
            interaction.refused_calls.append("callback")
            await self._notify()
            return error(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            return error(400, 40060, "Interaction has already been acknowledged.")
        body, files = await self._body(request)
        interaction.callbacks.append(body)
        interaction.ack_delay = delay
        kind, data = body["type"], body.get("data") or {}
        message = None
        if kind in (4, 5):
            channel = self.channels[int(interaction.payload["channel_id"])]
            ephemeral = bool(data.get("flags", 0) & 64)
            message = self._message(
                channel,
                self.bot,
                content=data.get("content", ""),
                flags=data.get("flags", 0),
                components=data.get("components", []),
                embeds=data.get("embeds", []),
                attachments=self._new_attachments(data, files),
            )
            message["interaction_token"] = interaction.token
            if kind == 5:
                message["loading"] = True
            interaction.original = message
            (self.ephemeral if ephemeral else self.messages)[int(message["id"])] = message
        elif kind == 7 and interaction.target is not None:
            self._edit(interaction.target, data, files)
        await self._notify()
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & 64),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"]["message"] = message
        return json_response(answer)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._by_token(request.match_info["token"])
        if interaction is None:
            return error(404, 10015, "Unknown Webhook")
        if interaction.expired:
            interaction.refused_calls.append("followup")
            return error(401, 50027, "Invalid Webhook Token")
        body, files = await self._body(request)
        original = interaction.original
        if original is not None and original.get("loading"):  # the first follow-up fills the "thinking" message
            original.pop("loading")
            self._edit(original, body, files)
            message = original
        else:
            channel = self.channels[int(interaction.payload["channel_id"])]
            message = self._message(
                channel,
                self.bot,
                content=body.get("content", ""),
                flags=body.get("flags", 0),
                components=body.get("components", []),
                embeds=body.get("embeds", []),
                attachments=self._new_attachments(body, files),
            )
            message["interaction_token"] = interaction.token
            interaction.followups.append(message)
            ephemeral = bool(message["flags"] & 64)
            (self.ephemeral if ephemeral else self.messages)[int(message["id"])] = message
        await self._notify()
        return json_response(message)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._by_token(request.match_info["token"])
        if interaction is None:
            return error(404, 10015, "Unknown Webhook")
        if interaction.expired:
            interaction.refused_calls.append(f"{request.method} webhook message")
            return error(401, 50027, "Invalid Webhook Token")
        which = request.match_info["message"]
        if which == "@original":
            message = interaction.original or (interaction.target if interaction.response_type == 6 else None)
        else:
            message = self.messages.get(int(which)) or self.ephemeral.get(int(which))
        if message is None:
            return error(404, 10008, "Unknown Message")
        if request.method == "PATCH":
            body, files = await self._body(request)
            message.pop("loading", None)
            self._edit(message, body, files)
        elif request.method == "DELETE":
            self._remove(int(message["id"]))
            await self._notify()
            return web.Response(status=204)
        await self._notify()
        return json_response(message)

    # channel messages --------------------------------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = self.channels.get(int(request.match_info["channel"]))
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        if channel.id in self.forbidden_channels:
            return error(403, 50013, "Missing Permissions")
        body, files = await self._body(request)
        too_big = self._too_big(files)
        if too_big:
            return too_big
        reference = None
        if body.get("message_reference"):
            reference = self.messages.get(int(body["message_reference"]["message_id"]))
        message = self._message(
            channel,
            self.bot,
            content=body.get("content", ""),
            flags=body.get("flags", 0),
            components=body.get("components", []),
            embeds=body.get("embeds", []),
            attachments=self._new_attachments(body, files),
            reference=reference,
        )
        self.messages[int(message["id"])] = message
        await self._notify()
        return json_response(message)

    async def _channel_message(self, request: web.Request) -> web.Response:
        message_id = int(request.match_info["message"])
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != request.match_info["channel"]:
            return error(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(message)
        if request.method == "DELETE":
            self._remove(message_id)
            await self._notify()
            return web.Response(status=204)
        if message["author"]["id"] != str(self.bot.id):
            return error(403, 50005, "Cannot edit a message authored by another user")
        body, files = await self._body(request)
        too_big = self._too_big(files)
        if too_big:
            return too_big
        self._edit(message, body, files)
        await self._notify()
        return json_response(message)

    def _too_big(self, files: dict[str, tuple[str, bytes]]) -> web.Response | None:
        for name, data in files.values():
            if len(data) > self.attachment_size_limit:
                return error(413, 40005, f"Request entity too large ({name}: {len(data)} bytes)")
        return None

    def _remove(self, message_id: int) -> None:
        self.messages.pop(message_id, None)
        self.ephemeral.pop(message_id, None)
        self.deleted.add(message_id)

    def _message(
        self,
        channel: Channel,
        author: User,
        *,
        content: str = "",
        flags: int = 0,
        components: list | None = None,
        embeds: list | None = None,
        attachments: list | None = None,
        reference: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content or "",
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": flags or 0,
            "components": components or [],
            "_created": time.monotonic(),
            "_edits": [],
        }
        if channel.guild_id is not None:
            message["guild_id"] = str(channel.guild_id)
        if reference is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": reference["id"],
                "channel_id": reference["channel_id"],
                "guild_id": reference.get("guild_id"),
            }
        return message

    def _edit(self, message: dict[str, Any], body: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> None:
        for key in ("content", "components", "embeds"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body:
            kept = {a["id"]: a for a in message["attachments"]}
            message["attachments"] = [kept[str(a["id"])] for a in body["attachments"] if str(a["id"]) in kept]
            message["attachments"] += self._new_attachments(body, files)
        message["edited_timestamp"] = now_iso()
        message["_edits"].append(time.monotonic())

    def _new_attachments(self, body: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> list[dict[str, Any]]:
        found = []
        for name, (filename, data) in files.items():
            index = re.fullmatch(r"files\[(\d+)\]", name)
            if index:
                found.append((int(index[1]), self._attachment(filename, data)))
        return [attachment for _, attachment in sorted(found, key=lambda pair: pair[0])]

    def _attachment(self, filename: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        attachment_id = self.snowflake()
        self.files[attachment_id] = data
        url = f"{self.base}/cdn/{attachment_id}/{filename}"
        attachment: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        kind = content_type or mimetypes.guess_type(filename)[0]
        if kind:
            attachment["content_type"] = kind
        try:
            with Image.open(io.BytesIO(data)) as image:
                attachment.update(width=image.width, height=image.height)
        except Exception:  # not an image: Discord leaves the size out
            pass
        return attachment

    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.files.get(int(request.match_info["attachment"]))
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    # REST plumbing -----------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return json_response({**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(APPLICATION_ID),
                "name": "remixbot",
                "icon": None,
                "description": "",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner.payload(),
                "summary": "",
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
                "interactions_endpoint_url": None,
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        body = await request.json()
        guild = request.match_info.get("guild")
        registered = []
        for command in body:
            entry = {
                "description": "",
                **command,
                "id": str(self.snowflake()),
                "application_id": str(APPLICATION_ID),
                "version": "1",
                "type": command.get("type", 1),
                "default_member_permissions": command.get("default_member_permissions"),
            }
            if guild:
                entry["guild_id"] = guild
            registered.append(entry)
        if guild:
            self.guild_commands[int(guild)] = registered
        else:
            self.global_commands = registered
        await self._notify()
        return json_response(registered)

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        if request.content_type == "multipart/form-data":
            body: dict[str, Any] = {}
            files: dict[str, tuple[str, bytes]] = {}
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    files[part.name] = (part.filename or "file", bytes(data))
            return body, files
        if request.can_read_body:
            return await request.json(), {}
        return {}, {}

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith(API):
            return await handler(request)
        public = path.startswith((API + "/interactions/", API + "/webhooks/"))
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        call = Call(request.method, path[len(API) :], 0, authorized)
        self.calls.append(call)
        for limit in self.rate_limits:
            if limit.times > 0 and limit.method == request.method and limit.pattern.search(call.path):
                limit.times -= 1
                self.rate_limited.append(f"{request.method} {call.path}")
                call.status = 429
                return json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": limit.retry_after,
                        "global": False,
                    },
                    429,
                    {"Via": "1.1 google", "Retry-After": "1", "X-RateLimit-Scope": "user"},
                )
        if not public and not authorized:
            call.status = 401
            return error(401, 0, "401: Unauthorized")
        response = await handler(request)
        call.status = response.status
        return response

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


# reading what the bot sent -----------------------------------------------------------------------


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components", []) for c in row.get("components", []) if c.get("type") == 2]


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for c in buttons(message) if "custom_id" in c]


def rows(message: dict[str, Any]) -> list[list[str]]:
    return [[c.get("custom_id", "") for c in row.get("components", [])] for row in message.get("components", [])]
