"""Content moderation in the core: what a classifier says about a picture, and the port it comes through.

The engine's safety kinds (``engine/kinds/nudenet.py``, ``engine/kinds/safety_checker.py``) score
pictures; the core decides what a score means for a chat (``bot.policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.jobs import Verdict

# what the user reads when the classifier flags the picture they sent (here, or on a worker)
SOURCE_FLAGGED = "That picture can't be used here: the content filter flagged it."


class Classifier(Protocol):
    """The port the service asks about a source picture before a job is queued (off the event loop)."""

    label: str

    async def classify(self, pictures: Sequence[bytes]) -> list[Verdict]: ...
