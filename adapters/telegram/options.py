"""The Telegram adapter's tuning knobs (flood limits, timings, upload limits); tests shorten them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    edit_interval: float = 1.5  # seconds between two progress edits of one job's status message
    preview_interval: float = 3.0  # seconds between two live previews of one job (each is an upload)
    action_interval: float = 4.0  # seconds between two "upload_photo" chat actions of one job
    album_wait: float = 1.0  # seconds of quiet that close an album (its pictures arrive one by one)
    attach_timeout: float = 30.0  # how long a job's events wait for its status message to be sent
    poll_timeout: int = 30  # getUpdates long-poll seconds
    overall_max_rate: float = 30  # requests per second, all chats (PTB AIORateLimiter; 0: off)
    group_max_rate: float = 20  # requests per minute per group chat (0: off)
    max_retries: int = 3  # retries of a request answered 429 (its retry_after is honoured)
    concurrent_updates: int = 16  # updates handled at once (users never wait on each other)
    history_page: int = 5  # jobs per /history page
    photo_max_bytes: int = 10 * 1024 * 1024  # sendPhoto's upload limit: bigger results also go as files
