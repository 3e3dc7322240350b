"""Fair share: which waiting job runs next, and about when a job's result will be ready.

Jobs are ordered by start-time fair queueing (Goyal, Vin and Cheng, 1996), as a score a sorted set
can hold: a job gets a *start tag* on its queue's virtual clock when it is queued, and the queue
runs the smallest tag first. A server (a Discord guild; a chat elsewhere) has a weight, 1 unless
configured; the users of a server who have work waiting share its weight equally. So

- within a chat/server users take turns: a user's 20 rerolls get one tag per round, and another
  user's single job is tagged with the current round, so it goes next;
- across servers, service follows the weights, however many users a server has.

A job from user u of a server with weight w, when the queue's virtual time is V, gets::

    start     = max(V, finish[u])          # never before the user's previous job
    finish[u] = start + UNIT * n / w       # n: users of that server with work ahead, u included

V is the smallest tag still in the queue (waiting or running), or ``clock`` — the largest finish
tag handed out — when the queue is empty, so an idle queue forgets old debts. A user whose finish
tag is at or below V has nothing ahead and is forgotten, which keeps the state small.

``LocalQueue`` keeps this state in memory (``Share``); ``ArqQueue`` keeps it in Redis and calls
``assign`` inside a WATCH/MULTI transaction: one rule for both. Tags are whole milliseconds since
the epoch far in the past (``ORIGIN``), so arq, which runs a job once its score is ≤ now, takes
them at once and in tag order.

The tags of queued jobs are fixed: when a second user joins a server, the first user's queued jobs
keep the tags they got alone. The per-user cap on queued jobs bounds how long that lasts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.jobs import Origin

ORIGIN = 1_000_000.0  # the virtual clock's start, in ms since the epoch (arq skips a score of 0)
UNIT = 1000.0  # what one job of a lone user in a weight-1 server advances the clock by
RATE_SMOOTHING = 0.3  # weight of the newest run in the moving average of seconds per job
RUNNING_SHARE = 0.5  # a running job is on average half done


def server_of(origin: Origin) -> str:
    """The fair-share unit above users: the Discord server, else the chat."""
    return f"{origin.platform}:{origin.guild_id or origin.chat_id}"


def user_of(origin: Origin) -> str:
    return f"{origin.platform}:{origin.user_id}"


@dataclass(frozen=True)
class Tags:
    score: int  # the job's start tag: its place in the queue
    finish: float  # the user's new finish tag
    clock: float  # the queue's new clock
    stale: tuple[str, ...]  # users of the server with nothing ahead: forget them


def assign(*, head: float | None, clock: float, finishes: Mapping[str, float], user: str, weight: float = 1.0) -> Tags:
    """The tags of a new job of ``user``, given the queue's smallest tag (``head``; None when the
    queue is empty), its clock and the finish tags of the users of the job's server."""
    if weight <= 0:
        raise ValueError(f"a server's weight must be positive, got {weight}")
    now = clock if head is None else head
    ahead = {name for name, finish in finishes.items() if finish > now}
    sharing = len(ahead | {user})
    start = max(now, finishes.get(user, now))
    finish = start + UNIT * sharing / weight
    stale = tuple(name for name in finishes if name not in ahead and name != user)
    return Tags(score=round(start), finish=finish, clock=max(clock, finish), stale=stale)


@dataclass
class Share:
    """One queue's fair-share state in memory (``ArqQueue`` keeps the same fields in Redis)."""

    clock: float = ORIGIN
    finishes: dict[str, dict[str, float]] = field(default_factory=dict)  # server → user → finish tag

    def tag(self, origin: Origin, head: float | None, weight: float = 1.0) -> int:
        """The score of a new job from ``origin``; updates the state."""
        server, user = server_of(origin), user_of(origin)
        users = self.finishes.setdefault(server, {})
        tags = assign(head=head, clock=self.clock, finishes=users, user=user, weight=weight)
        for name in tags.stale:
            del users[name]
        users[user] = tags.finish
        self.clock = tags.clock
        return tags.score


def update_rate(old: float | None, seconds: float) -> float:
    """The moving average of seconds per job after one more run."""
    return seconds if old is None else old + RATE_SMOOTHING * (seconds - old)


def estimate(
    model: str, *, running: Iterable[str], waiting: Iterable[str], rates: Mapping[str, float], workers: int
) -> float | None:
    """Seconds until a job of ``model`` is done: the jobs running and waiting ahead of it (their
    models; "" when unknown), shared by the queue's workers, then its own run — each at its model's
    measured rate.

    None when no rate is known for ``model`` yet or no worker serves its queue.
    """
    own = rates.get(model)
    if own is None or workers < 1:
        return None
    ahead = sum(RUNNING_SHARE * rates.get(name, own) for name in running)
    ahead += sum(rates.get(name, own) for name in waiting)
    return round(ahead / workers + own, 2)
