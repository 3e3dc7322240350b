"""The ledger: users, jobs, outputs and lineage in SQLite (aiosqlite), files under the data dir.

Files are named by job id, never by anything a user typed: ``inputs/<job>.png``,
``inputs/<job>-ref<i>.png`` and ``outputs/<job>-<index>.<ext>``. They are the operator's alone: the
data directory is 0700 and every file is created 0600 (``write_private``), whatever the umask.
The schema is versioned with ``PRAGMA user_version``; each entry of ``MIGRATIONS`` moves it one
version up.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.jobs import Action, Job, Origin, Request, Result, Status, from_data, to_data

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        UNIQUE (platform, platform_user_id)
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        action TEXT NOT NULL,
        request TEXT NOT NULL,
        origin TEXT NOT NULL,
        queue_group TEXT NOT NULL,
        status TEXT NOT NULL,
        parent_job TEXT REFERENCES jobs(id) ON DELETE SET NULL,
        parent_output INTEGER,
        reference_count INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT NOT NULL DEFAULT '',
        engine TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        status_message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_by_user ON jobs (user_id, created_at DESC);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE INDEX jobs_by_parent ON jobs (parent_job);
    CREATE TABLE outputs (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        path TEXT NOT NULL,
        media_type TEXT NOT NULL,
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, idx)
    );
    """,
    # 2: --compare sets: each job points to the set's first job; the first job records that the
    # set's sheet was handed out (once)
    """
    ALTER TABLE jobs ADD COLUMN compare_of TEXT REFERENCES jobs(id) ON DELETE SET NULL;
    ALTER TABLE jobs ADD COLUMN compare_sheet_sent INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_by_compare ON jobs (compare_of);
    """,
    # 3: a job's files can be gone while its record stays: "deleted" (Delete) or "expired" (retention)
    """
    ALTER TABLE jobs ADD COLUMN removed TEXT NOT NULL DEFAULT '';
    """,
    # 4: moderation (bot/policy.py): each server's or group's rules, the log of refusals (no image
    # kept), and what the content classifier said of each stored output
    """
    CREATE TABLE chat_rules (
        scope TEXT PRIMARY KEY,
        rules TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE moderation_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        scope TEXT NOT NULL,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL DEFAULT '',
        chat_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        score REAL
    );
    CREATE INDEX moderation_log_by_scope ON moderation_log (scope, id DESC);
    ALTER TABLE outputs ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outputs ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: --style presets a server's or group's admins added (bot/styles.py), as plain data by name
    """
    CREATE TABLE styles (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        style TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (scope, name)
    );
    """,
]


@dataclass(frozen=True)
class UserRecord:
    id: int
    platform: str
    platform_user_id: str
    name: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class OutputRecord:
    job_id: str
    index: int
    seed: int
    path: Path
    media_type: str
    width: int
    height: int
    flagged: bool = False  # the content classifier flagged it (delivered only where the chat's policy allows)
    spoiler: bool = False  # to be posted behind a spoiler


@dataclass(frozen=True)
class LogEntry:
    """One refusal in the moderation log."""

    id: int
    at: float
    scope: str
    platform: str
    user_id: str
    user_name: str
    chat_id: str
    reason: str
    detail: str
    score: float | None


@dataclass(frozen=True)
class JobRecord:
    id: str
    user_id: int
    action: Action
    request: Request
    origin: Origin
    group: str
    status: Status
    parent_job: str | None
    parent_output: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str
    engine: str
    note: str
    status_message: str
    outputs: tuple[OutputRecord, ...]
    compare_of: str | None = None  # the first job of its --compare set (that job's own id too), or None
    removed: str = ""  # "deleted" or "expired" once its files are gone


class History:
    """One SQLite file and the data directory beside it. Open with ``await History.open(...)``."""

    def __init__(self, db: aiosqlite.Connection, data_dir: Path):
        self._db = db
        self.data_dir = data_dir
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: Path) -> History:
        data_dir = Path(data_dir)
        for folder in (data_dir, data_dir / "inputs", data_dir / "outputs"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
        ledger = data_dir / "remixbot.sqlite3"
        os.close(os.open(ledger, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives -wal and -shm its mode
        ledger.chmod(0o600)
        db = await aiosqlite.connect(ledger)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe after a crash, fewer fsyncs
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        history = cls(db, data_dir)
        await history._migrate()
        return history

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        version = await self.schema_version()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def schema_version(self) -> int:
        return int((await self._row("PRAGMA user_version"))[0])

    # users -----------------------------------------------------------------------------------

    async def user(self, origin: Origin) -> UserRecord:
        """The user behind an origin, created on first sight (the display name kept fresh)."""
        async with self._lock:
            await self._db.execute(
                "INSERT INTO users (platform, platform_user_id, name, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (platform, platform_user_id) DO UPDATE SET"
                " name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END",
                (origin.platform, origin.user_id, origin.user_name, time.time()),
            )
            await self._db.commit()
        row = await self._row(
            "SELECT * FROM users WHERE platform = ? AND platform_user_id = ?", origin.platform, origin.user_id
        )
        return _user(row)

    async def user_by_id(self, user_id: int) -> UserRecord | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", user_id)
        return _user(row) if row else None

    async def users(self) -> list[UserRecord]:
        rows = await self._all("SELECT * FROM users ORDER BY id")
        return [_user(row) for row in rows]

    async def save_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        await self._write("UPDATE users SET settings = ? WHERE id = ?", json.dumps(settings), user_id)

    # jobs ------------------------------------------------------------------------------------

    async def add_job(self, job: Job, user_id: int, *, compare_of: str | None = None) -> None:
        """Record a queued job and keep its source and reference images as files.

        ``compare_of``: the first job of the --compare set this job belongs to (its own id for the first).
        """
        await asyncio.to_thread(self._write_inputs, job)
        await self._write(
            "INSERT INTO jobs (id, user_id, action, request, origin, queue_group, status, parent_job,"
            " parent_output, reference_count, created_at, compare_of)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            job.id,
            user_id,
            job.action.value,
            json.dumps(to_data(job.request)),
            json.dumps(to_data(job.origin)),
            job.group,
            Status.queued.value,
            job.parent_job,
            job.parent_output,
            len(job.references),
            job.created_at,
            compare_of,
        )

    def _write_inputs(self, job: Job) -> None:
        write_private(self.data_dir / "inputs" / f"{job.id}.png", job.image)
        for i, data in enumerate(job.references):
            write_private(self.data_dir / "inputs" / f"{job.id}-ref{i}.png", data)

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self._one("SELECT * FROM jobs WHERE id = ?", job_id)
        if row is None:
            return None
        outputs = await self._all("SELECT * FROM outputs WHERE job_id = ? ORDER BY idx", job_id)
        return self._record(row, outputs)

    async def load_job(self, job_id: str) -> Job | None:
        """The job as the engine saw it, images included (to run it again after a restart)."""
        record = await self.job(job_id)
        if record is None:
            return None
        row = await self._row("SELECT reference_count FROM jobs WHERE id = ?", job_id)
        image, references = await asyncio.to_thread(self._read_inputs, job_id, row["reference_count"])
        return Job(
            id=record.id,
            action=record.action,
            request=record.request,
            image=image,
            origin=record.origin,
            group=record.group,
            references=references,
            parent_job=record.parent_job,
            parent_output=record.parent_output,
            created_at=record.created_at,
        )

    def _read_inputs(self, job_id: str, count: int) -> tuple[bytes, tuple[bytes, ...]]:
        inputs = self.data_dir / "inputs"
        image = (inputs / f"{job_id}.png").read_bytes()
        return image, tuple((inputs / f"{job_id}-ref{i}.png").read_bytes() for i in range(count))

    def source_path(self, job_id: str) -> Path:
        return self.data_dir / "inputs" / f"{job_id}.png"

    async def mark_running(self, job_id: str) -> bool:
        return await self._write(
            "UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = ?",
            Status.running.value,
            time.time(),
            job_id,
            Status.queued.value,
        )

    async def requeue(self, job_id: str) -> bool:
        """Put a job that was running when the process died back to queued."""
        return await self._write(
            "UPDATE jobs SET status = ?, started_at = NULL WHERE id = ? AND status = ?",
            Status.queued.value,
            job_id,
            Status.running.value,
        )

    async def finish(self, result: Result, spoilers: frozenset[int] = frozenset()) -> bool:
        """Store a finished job's outputs and status. True only the first time: delivery is once.

        ``spoilers``: indexes of outputs to post behind a spoiler."""
        paths = await asyncio.to_thread(self._write_outputs, result)
        async with self._lock:
            cursor = await self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, engine = ?, note = ?"
                " WHERE id = ? AND status IN (?, ?)",
                (
                    result.status.value,
                    time.time(),
                    result.error,
                    result.engine,
                    result.note,
                    result.job_id,
                    Status.queued.value,
                    Status.running.value,
                ),
            )
            if cursor.rowcount != 1:
                await self._db.rollback()
                return False
            await self._db.executemany(
                "INSERT INTO outputs (job_id, idx, seed, path, media_type, width, height, flagged, spoiler)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        result.job_id,
                        o.index,
                        o.seed,
                        str(path),
                        o.media_type,
                        o.width,
                        o.height,
                        bool(o.verdict and o.verdict.flagged),
                        o.index in spoilers,
                    )
                    for o, path in zip(result.outputs, paths, strict=True)
                ],
            )
            await self._db.commit()
        return True

    def _write_outputs(self, result: Result) -> list[Path]:
        paths = []
        for output in result.outputs:
            path = self.data_dir / "outputs" / f"{result.job_id}-{output.index}.{output.extension}"
            write_private(path, output.data)
            paths.append(path)
        return paths

    async def cancel(self, job_id: str) -> bool:
        return await self._write(
            "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
            Status.cancelled.value,
            time.time(),
            job_id,
            Status.queued.value,
            Status.running.value,
        )

    async def remove_files(self, job_id: str, reason: str) -> None:
        """Delete a job's input and output files and record why ("deleted", "expired")."""
        await asyncio.to_thread(self._remove_files, job_id)
        await self._write("UPDATE jobs SET removed = ? WHERE id = ?", reason, job_id)

    def _remove_files(self, job_id: str) -> None:
        for folder in ("inputs", "outputs"):
            for path in (self.data_dir / folder).glob(f"{job_id}*"):
                path.unlink(missing_ok=True)

    async def finished_before(self, moment: float) -> list[str]:
        """Ids of finished jobs (files still there) that finished before ``moment`` (a time.time())."""
        rows = await self._all(
            "SELECT id FROM jobs WHERE removed = '' AND status IN (?, ?, ?) AND COALESCE(finished_at, created_at) < ?",
            Status.done.value,
            Status.failed.value,
            Status.cancelled.value,
            moment,
        )
        return [row["id"] for row in rows]

    async def forget_user(self, user_id: int) -> int:
        """Delete a user, their jobs (records, outputs) and their files. Returns how many jobs there were."""
        rows = await self._all("SELECT id FROM jobs WHERE user_id = ?", user_id)
        ids = [row["id"] for row in rows]
        for job_id in ids:
            await asyncio.to_thread(self._remove_files, job_id)
        async with self._lock:
            await self._db.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,))
            await self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            await self._db.commit()
        return len(ids)

    async def set_status_message(self, job_id: str, message: str) -> None:
        await self._write("UPDATE jobs SET status_message = ? WHERE id = ?", message, job_id)

    async def unfinished(self) -> list[str]:
        """Ids of jobs queued or running, oldest first."""
        rows = await self._all(
            "SELECT id FROM jobs WHERE status IN (?, ?) ORDER BY created_at",
            Status.queued.value,
            Status.running.value,
        )
        return [row["id"] for row in rows]

    async def jobs_of(self, user_id: int, *, limit: int = 10, offset: int = 0) -> list[JobRecord]:
        rows = await self._all(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            user_id,
            limit,
            offset,
        )
        return await self._records(rows)

    async def count_jobs(self, user_id: int, *statuses: Status) -> int:
        marks = ",".join("?" * len(statuses)) if statuses else ""
        where = f" AND status IN ({marks})" if statuses else ""
        row = await self._row(
            f"SELECT COUNT(*) AS n FROM jobs WHERE user_id = ?{where}", user_id, *[s.value for s in statuses]
        )
        return int(row["n"])

    async def compared(self, first_job: str) -> list[JobRecord]:
        """The jobs of a --compare set (by its first job's id), in the order they were submitted."""
        rows = await self._all("SELECT id FROM jobs WHERE compare_of = ? ORDER BY created_at, rowid", first_job)
        return await self._records(rows)

    async def claim_compare_sheet(self, first_job: str) -> bool:
        """True for the one caller that gets to hand out a --compare set's sheet; False ever after."""
        return await self._write(
            "UPDATE jobs SET compare_sheet_sent = 1 WHERE id = ? AND compare_sheet_sent = 0", first_job
        )

    async def lineage(self, job_id: str) -> list[JobRecord]:
        """The job and its ancestors, newest first."""
        chain: list[JobRecord] = []
        current: str | None = job_id
        while current and len(chain) < 100:
            record = await self.job(current)
            if record is None:
                break
            chain.append(record)
            current = record.parent_job
        return chain

    # moderation ------------------------------------------------------------------------------

    async def rules(self, scope: str) -> dict[str, Any] | None:
        """A server's or group's stored rules (plain data for ``bot.policy.Rules``), None if never set."""
        row = await self._one("SELECT rules FROM chat_rules WHERE scope = ?", scope)
        return None if row is None else dict(json.loads(row["rules"]))

    async def save_rules(self, scope: str, rules: dict[str, Any]) -> None:
        await self._write(
            "INSERT INTO chat_rules (scope, rules, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (scope) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
            scope,
            json.dumps(rules),
            time.time(),
        )

    async def styles(self, scope: str) -> dict[str, dict[str, Any]]:
        """A server's or group's own styles (plain data for ``bot.styles.make_style``) by name."""
        rows = await self._all("SELECT name, style FROM styles WHERE scope = ? ORDER BY name", scope)
        return {row["name"]: dict(json.loads(row["style"])) for row in rows}

    async def save_style(self, scope: str, name: str, style: dict[str, Any]) -> None:
        await self._write(
            "INSERT INTO styles (scope, name, style, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (scope, name) DO UPDATE SET style = excluded.style, updated_at = excluded.updated_at",
            scope,
            name,
            json.dumps(style),
            time.time(),
        )

    async def delete_style(self, scope: str, name: str) -> bool:
        """Remove a style; False when there was none of that name."""
        return await self._write("DELETE FROM styles WHERE scope = ? AND name = ?", scope, name)

    async def job_times(self, user_id: int, since: float) -> list[tuple[float, Origin]]:
        """(created_at, origin) of the user's jobs created since ``since``, oldest first."""
        rows = await self._all(
            "SELECT created_at, origin FROM jobs WHERE user_id = ? AND created_at >= ? ORDER BY created_at",
            user_id,
            since,
        )
        return [(row["created_at"], from_data(Origin, json.loads(row["origin"]))) for row in rows]

    async def log_refusal(
        self, scope: str, origin: Origin, reason: str, detail: str = "", score: float | None = None
    ) -> None:
        """Record a refusal (who, where, why, score; never an image)."""
        await self._write(
            "INSERT INTO moderation_log (at, scope, platform, user_id, user_name, chat_id, reason, detail, score)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            time.time(),
            scope,
            origin.platform,
            origin.user_id,
            origin.user_name,
            origin.chat_id,
            reason,
            detail,
            score,
        )

    async def moderation_log(self, scope: str, *, limit: int = 10, offset: int = 0) -> list[LogEntry]:
        """A scope's refusals, newest first."""
        rows = await self._all(
            "SELECT * FROM moderation_log WHERE scope = ? ORDER BY id DESC LIMIT ? OFFSET ?", scope, limit, offset
        )
        return [LogEntry(**{key: row[key] for key in row.keys()}) for row in rows]

    # plumbing --------------------------------------------------------------------------------

    def _record(self, row: aiosqlite.Row, outputs: list[aiosqlite.Row]) -> JobRecord:
        return JobRecord(
            id=row["id"],
            user_id=row["user_id"],
            action=Action(row["action"]),
            request=from_data(Request, json.loads(row["request"])),
            origin=from_data(Origin, json.loads(row["origin"])),
            group=row["queue_group"],
            status=Status(row["status"]),
            parent_job=row["parent_job"],
            parent_output=row["parent_output"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            error=row["error"],
            engine=row["engine"],
            note=row["note"],
            status_message=row["status_message"],
            compare_of=row["compare_of"],
            removed=row["removed"],
            outputs=tuple(
                OutputRecord(
                    job_id=o["job_id"],
                    index=o["idx"],
                    seed=o["seed"],
                    path=Path(o["path"]),
                    media_type=o["media_type"],
                    width=o["width"],
                    height=o["height"],
                    flagged=bool(o["flagged"]),
                    spoiler=bool(o["spoiler"]),
                )
                for o in outputs
            ),
        )

    async def _one(self, sql: str, *args: Any) -> aiosqlite.Row | None:
        return await (await self._db.execute(sql, args)).fetchone()

    async def _row(self, sql: str, *args: Any) -> aiosqlite.Row:
        """The one row a query always has."""
        row = await self._one(sql, *args)
        if row is None:
            raise LookupError(f"no row for {sql!r}")
        return row

    async def _records(self, rows: list[aiosqlite.Row]) -> list[JobRecord]:
        """The records of job ids (those gone meanwhile left out)."""
        return [record for row in rows if (record := await self.job(row["id"])) is not None]

    async def _all(self, sql: str, *args: Any) -> list[aiosqlite.Row]:
        return list(await (await self._db.execute(sql, args)).fetchall())

    async def _write(self, sql: str, *args: Any) -> bool:
        async with self._lock:
            cursor = await self._db.execute(sql, args)
            await self._db.commit()
            return cursor.rowcount > 0


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (0600 from the moment it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)  # an older file of that name keeps no wider mode


def _user(row: aiosqlite.Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        platform=row["platform"],
        platform_user_id=row["platform_user_id"],
        name=row["name"],
        settings=json.loads(row["settings"]),
    )
