"""A content classifier whose verdicts the test decides, injected at the classifier's boundary.

``Scripted`` is the scorer a safety kind's ``load`` returns (``engine.safety.Scorer``); everything
around it is real: ``engine.safety.Safety`` (threads, clips' frames), the engine writing a verdict on
every output, the service's source check, policy and storage. No NSFW picture is in the repository.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from PIL import Image

from bot.jobs import Verdict
from bot.models import ModelEntry
from engine.safety import Safety

LABEL = "FEMALE_BREAST_EXPOSED"


class Scripted:
    """Flags the pictures ``next`` says (in the order it is shown them), then every picture while
    ``flagging`` is set; safe otherwise. Counts what it was shown."""

    label = "scripted"

    def __init__(self) -> None:
        self.next: collections.deque[bool] = collections.deque()
        self.flagging = False
        self.seen = 0

    def classify(self, pictures: Sequence[Image.Image]) -> list[Verdict]:
        self.seen += len(pictures)
        verdicts = []
        for _ in pictures:
            flagged = self.next.popleft() if self.next else self.flagging
            verdicts.append(Verdict(True, 0.93, LABEL) if flagged else Verdict(False, 0.02, ""))
        return verdicts


def safety_of(scorer: Scripted, entry: ModelEntry | None = None) -> Safety:
    """The real ``Safety`` around ``scorer`` (for the registry's entry, or a stand-in nudenet one)."""
    return Safety(entry or ModelEntry(name="nudenet", kind="nudenet"), scorer=scorer)


def inject(monkeypatch, scorer: Scripted) -> None:
    """Every ``Safety.of`` (what ``remixbot run`` wires: the engine's and the bot's classifier) gets
    ``scorer`` as its loaded scorer, for the registry's own classifier entry."""

    def of(cls, models, device: str = "cpu") -> Safety | None:
        entry = models.classifier
        return None if entry is None else Safety(entry, device, scorer=scorer)

    monkeypatch.setattr(Safety, "of", classmethod(of))
