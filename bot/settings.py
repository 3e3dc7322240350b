"""Environment → typed settings. Every variable is documented in config/remixbot.example.env."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_RESULT_BYTES = 64 * 1024 * 1024  # a job's results as they cross Redis (bot.queue.wire)


class Secret(str):
    """A string that never shows itself in a repr, a log line or an f-string by accident."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def __format__(self, spec: str) -> str:
        return "***" if self else ""

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "***" if self else ""


@dataclass(frozen=True)
class Limits:
    max_prompt_length: int = 1000
    max_num_images: int = 4
    max_size: int = 1536  # the longest side a model renders at (and a stored source's)
    max_output_size: int = 4096  # --size above max_size: rendered at the model's size, then upscaled to this
    min_size: int = 64
    max_steps: int = 100
    max_image_bytes: int = 20 * 1024 * 1024  # Telegram's download cap; Discord's is lower
    max_image_pixels: int = 40_000_000  # decoding anything larger is refused before it starts
    max_output_pixels: int = 32_000_000  # results (an upscale of an upscale…) are never larger
    max_references: int = 3
    max_queued_per_user: int = 5
    rate_per_minute: int = 20  # requests per user per minute


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")  # weights/ in it holds what `remixbot weights install` fetched
    models_path: Path = ROOT / "config" / "models.toml"
    lora_dir: Path | None = None  # a folder of .safetensors LoRAs, used as <lora:name:weight> in prompts
    redis_url: str = ""  # empty: embedded mode (engine in-process)
    device: str = ""  # engine device: "", "cpu", "cuda", "cuda:1"; "" picks CUDA when present
    job_timeout: int = 900  # seconds a job may run
    poll_delay: float = 0.02  # seconds between an idle arq worker's looks at its queue
    result_ttl: int = 7 * 24 * 3600  # seconds a worker's result waits in Redis for the bot
    max_result_bytes: int = MAX_RESULT_BYTES  # a worker refuses to store more (the job fails, saying so)
    vary_strength_subtle: float = 0.35
    vary_strength_strong: float = 0.7
    limits: Limits = field(default_factory=Limits)
    telegram_token: Secret = Secret("")
    telegram_base_url: str = ""
    telegram_base_file_url: str = ""
    discord_token: Secret = Secret("")
    discord_guild_ids: tuple[int, ...] = ()
    discord_message_content: bool = False
    discord_allowed_channels: tuple[tuple[int, int], ...] = ()  # (server, channel); server 0: any server
    log_level: str = ""  # "": INFO for services, WARNING for one-shot commands
    log_format: str = "plain"  # "plain" or "json" (one JSON object per line)
    metrics_port: int = 0  # serve Prometheus metrics on this port (bot and workers); 0: off
    job_lease: float = 30.0  # seconds a dead worker's job stays claimed before another worker re-runs it
    memory_budget: int = 0  # bytes of resident models (GPU or RAM); 0: 80% of the device's memory
    batch_size: int = 0  # most jobs of one model in one batch (and arq max_jobs); 0: 8 on a GPU, 1 on a CPU
    batch_window: float = 0.03  # seconds the engine waits to fill a batch; 0: no batching
    # moderation, operator-wide (bot/policy.py): banned words and phrases and blocked users everywhere
    # ("platform:user_id"), and the rules a server or group starts with
    banned_words: tuple[str, ...] = ()
    blocked_users: tuple[str, ...] = ()
    server_nsfw: str = "block"  # block, spoiler or allow
    server_daily_quota: int = 0  # jobs per user per 24 h; 0: none
    server_cooldown: int = 0  # seconds between one user's jobs; 0: none
    retention_days: float = 30.0  # inputs and outputs of jobs finished longer ago are deleted; 0: kept forever
    retention_sweep: float = 3600.0  # seconds between two sweeps for them

    @property
    def weights_dir(self) -> Path:
        """Where ``remixbot weights install`` puts weights; models.toml's ``weights:`` sources point here."""
        return self.data_dir / "weights"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    return int(value) if value else default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    return float(value) if value else default


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    """A size: "12884901888", "12GiB" or "12G" (powers of 1024), "12GB" (powers of 1000)."""
    value = env.get(name, "").strip()
    if not value:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)", value, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{name}={value!r} is not a size in bytes (e.g. 12GiB)")
    number, unit, binary, byte = match.groups()
    base = 1000 if unit and byte and not binary else 1024
    return int(float(number) * base ** (" kmgt".index(unit.lower() or " ")))


def _ids(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in env.get(name, "").replace(" ", "").split(",") if part)


def _channels(env: Mapping[str, str], name: str) -> tuple[tuple[int, int], ...]:
    """``SERVER:CHANNEL`` pairs, comma-separated; a bare ``CHANNEL`` holds every server to the list."""
    pairs = []
    for part in env.get(name, "").replace(" ", "").split(","):
        if part:
            server, _, channel = part.rpartition(":")
            pairs.append((int(server or 0), int(channel)))
    return tuple(pairs)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (or a mapping, in tests)."""
    env = os.environ if env is None else env
    defaults = Limits()
    limits = Limits(
        max_prompt_length=_int(env, "REMIXBOT_MAX_PROMPT_LENGTH", defaults.max_prompt_length),
        max_num_images=_int(env, "REMIXBOT_MAX_N", defaults.max_num_images),
        max_size=_int(env, "REMIXBOT_MAX_SIZE", defaults.max_size),
        max_output_size=_int(env, "REMIXBOT_MAX_OUTPUT_SIZE", defaults.max_output_size),
        max_steps=_int(env, "REMIXBOT_MAX_STEPS", defaults.max_steps),
        max_image_bytes=_int(env, "REMIXBOT_MAX_IMAGE_BYTES", defaults.max_image_bytes),
        max_image_pixels=_int(env, "REMIXBOT_MAX_IMAGE_PIXELS", defaults.max_image_pixels),
        max_output_pixels=_int(env, "REMIXBOT_MAX_OUTPUT_PIXELS", defaults.max_output_pixels),
        max_queued_per_user=_int(env, "REMIXBOT_MAX_QUEUED_PER_USER", defaults.max_queued_per_user),
        rate_per_minute=_int(env, "REMIXBOT_RATE_PER_MINUTE", defaults.rate_per_minute),
    )
    base = Settings()
    return Settings(
        data_dir=Path(env.get("REMIXBOT_DATA_DIR") or base.data_dir),
        models_path=Path(env.get("REMIXBOT_MODELS") or base.models_path),
        lora_dir=Path(env["REMIXBOT_LORA_DIR"]).expanduser() if env.get("REMIXBOT_LORA_DIR") else base.lora_dir,
        redis_url=env.get("REDIS_URL", "").strip(),
        device=env.get("REMIXBOT_DEVICE", "").strip(),
        job_timeout=_int(env, "REMIXBOT_JOB_TIMEOUT", base.job_timeout),
        poll_delay=_float(env, "REMIXBOT_POLL_DELAY", base.poll_delay),
        result_ttl=_int(env, "REMIXBOT_RESULT_TTL", base.result_ttl),
        max_result_bytes=_bytes(env, "REMIXBOT_MAX_RESULT_BYTES", base.max_result_bytes),
        vary_strength_subtle=_float(env, "REMIXBOT_VARY_SUBTLE", base.vary_strength_subtle),
        vary_strength_strong=_float(env, "REMIXBOT_VARY_STRONG", base.vary_strength_strong),
        limits=limits,
        telegram_token=Secret(env.get("TELEGRAM_TOKEN", "").strip()),
        telegram_base_url=env.get("TELEGRAM_BASE_URL", "").strip(),
        telegram_base_file_url=env.get("TELEGRAM_BASE_FILE_URL", "").strip(),
        discord_token=Secret(env.get("DISCORD_TOKEN", "").strip()),
        discord_guild_ids=_ids(env, "DISCORD_GUILD_IDS"),
        discord_message_content=env.get("DISCORD_MESSAGE_CONTENT", "").lower() in ("1", "true", "yes"),
        discord_allowed_channels=_channels(env, "DISCORD_ALLOWED_CHANNELS"),
        log_level=env.get("REMIXBOT_LOG_LEVEL", "").upper(),
        log_format=env.get("REMIXBOT_LOG_FORMAT", "").strip().lower() or base.log_format,
        metrics_port=_int(env, "REMIXBOT_METRICS_PORT", base.metrics_port),
        job_lease=_float(env, "REMIXBOT_JOB_LEASE", base.job_lease),
        memory_budget=_bytes(env, "REMIXBOT_MEMORY_BUDGET", base.memory_budget),
        batch_size=_int(env, "REMIXBOT_BATCH_SIZE", base.batch_size),
        batch_window=_float(env, "REMIXBOT_BATCH_WINDOW", base.batch_window),
        retention_days=_float(env, "REMIXBOT_RETENTION_DAYS", base.retention_days),
        banned_words=_list(env, "REMIXBOT_BANNED_WORDS"),
        blocked_users=_list(env, "REMIXBOT_BLOCKED_USERS"),
        server_nsfw=env.get("REMIXBOT_SERVER_NSFW", "").strip().lower() or base.server_nsfw,
        server_daily_quota=_int(env, "REMIXBOT_SERVER_DAILY_QUOTA", base.server_daily_quota),
        server_cooldown=_int(env, "REMIXBOT_SERVER_COOLDOWN", base.server_cooldown),
    )
