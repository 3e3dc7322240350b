"""How a prompt is read: AUTOMATIC1111's attention syntax and ``BREAK``.

``(word)`` weighs ``word`` ×1.1, ``((word))`` ×1.21, ``[word]`` ÷1.1, ``(word:1.3)`` ×1.3 (nesting
multiplies), ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets, and ``BREAK`` (in capitals) starts a new
77-token chunk. ``parse_prompt`` turns a prompt into segments (one per ``BREAK``) of weighted
fragments in one pass over the text; the engine encodes them through compel. The same rules as
A1111's ``parse_prompt_attention``, but linear: a bracket's weight is applied once, when the groups
are flattened, not to every fragment after it as each bracket closes. Brackets that cross (``( [ )``)
close in order; unclosed ones apply to the end of the prompt, like A1111.

No torch here: the core reads prompts too (to refuse a costly one and to show how one was read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ROUND = 1.1  # (word)
SQUARE = 1 / 1.1  # [word]
_DEFAULT = {"(": ROUND, "[": SQUARE}
MIN_WEIGHT, MAX_WEIGHT = 0.0, 3.0  # weights outside are clamped: beyond them CLIP gives noise
MAX_WEIGHTED = 24  # fragments with a weight other than 1: each one below 1 costs a text-encoder pass

_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]                        # an escaped bracket or backslash
    | \\                                # a lone backslash
    | [(\[]                             # an opening bracket
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)  # the ":1.3)" that closes a weighted group
    | [)\]]                             # a closing bracket
    | [^\\()\[\]:]+                     # plain text
    | :                                 # a colon that is not part of a weight
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class Fragment:
    text: str
    weight: float = 1.0


Segment = tuple[Fragment, ...]


@dataclass
class _Group:
    opener: str  # "(", "[" or "" for the whole prompt
    items: list[Fragment | _Group | None] = field(default_factory=list)  # None: a BREAK
    weight: float | None = None  # set when it closes


def parse_prompt(text: str) -> tuple[Segment, ...]:
    """The prompt's segments (split at ``BREAK``), each a tuple of weighted fragments.

    Neighbouring fragments of equal weight are merged; a prompt with no syntax is one segment of one
    fragment with weight 1 and the same text.
    """
    root = _Group("")
    stack = [root]
    opened = {"(": 0, "[": 0}  # open groups of each kind, so a closer needs no search of the stack
    for match in _TOKEN.finditer(text):
        token, weight = match.group(), match["weight"]
        top = stack[-1]
        if token.startswith("\\") and len(token) == 2:
            top.items.append(Fragment(token[1]))
        elif token in ("(", "["):
            stack.append(_Group(token))
            opened[token] += 1
        elif weight is not None and opened["("] and _number(weight) is not None:
            _close(stack, opened, "(", float(weight))
        elif token == ")" and opened["("]:
            _close(stack, opened, "(", ROUND)
        elif token == "]" and opened["["]:
            _close(stack, opened, "[", SQUARE)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index:
                    top.items.append(None)
                if part:
                    top.items.append(Fragment(part))
    while len(stack) > 1:  # unclosed brackets weigh everything after them
        _close(stack, opened, stack[-1].opener, None)
    return _segments(root)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "1.2.3": A1111 would fail; here it is plain text
        return None


def _close(stack: list[_Group], opened: dict[str, int], opener: str, weight: float | None) -> None:
    """Close groups down to the innermost one opened with ``opener``; it gets ``weight`` (None: its default)."""
    while True:
        group = stack.pop()
        opened[group.opener] -= 1
        group.weight = _DEFAULT[group.opener] if weight is None or group.opener != opener else weight
        stack[-1].items.append(group)
        if group.opener == opener:
            return


def _segments(root: _Group) -> tuple[Segment, ...]:
    segments: list[list[tuple[list[str], float]]] = [[]]  # per segment: (text pieces, weight) runs
    # An explicit stack of (items, index, weight): nesting depth cannot overflow Python's stack.
    pending: list[tuple[list[Fragment | _Group | None], int, float]] = [(root.items, 0, 1.0)]
    while pending:
        items, index, weight = pending.pop()
        if index >= len(items):
            continue
        pending.append((items, index + 1, weight))
        item = items[index]
        if item is None:
            segments.append([])
        elif isinstance(item, _Group):
            pending.append((item.items, 0, weight * (1.0 if item.weight is None else item.weight)))
        else:
            runs, clamped = segments[-1], _clamp(weight)
            if runs and runs[-1][1] == clamped:  # neighbours of equal weight merge
                runs[-1][0].append(item.text)
            else:
                runs.append(([item.text], clamped))
    return tuple(
        tuple(Fragment("".join(pieces), weight) for pieces, weight in runs) or (Fragment(""),) for runs in segments
    )


def _clamp(weight: float) -> float:
    return round(min(max(weight, MIN_WEIGHT), MAX_WEIGHT), 4)


def uses_syntax(segments: tuple[Segment, ...]) -> bool:
    """True when the prompt has weights or BREAKs (not just text)."""
    return len(segments) > 1 or any(fragment.weight != 1.0 for fragment in segments[0])


def weighted_count(segments: tuple[Segment, ...]) -> int:
    return sum(1 for segment in segments for fragment in segment if fragment.weight != 1.0)


def check_prompt(text: str) -> str | None:
    """None when the prompt can be encoded at a fair cost; else a friendly reason."""
    count = weighted_count(parse_prompt(text))
    if count > MAX_WEIGHTED:
        return f"The prompt has {count} weighted parts; up to {MAX_WEIGHTED} are allowed."
    return None


def describe_prompt(text: str) -> str | None:
    """How the prompt was read, in A1111's explicit form (``(cat:1.21) on a mat``), when it used syntax."""
    segments = parse_prompt(text)
    if not uses_syntax(segments):
        return None
    return " BREAK ".join("".join(_show(fragment) for fragment in segment).strip() for segment in segments)


def _show(fragment: Fragment) -> str:
    text = re.sub(r"([()\[\]\\])", r"\\\1", fragment.text)
    if fragment.weight == 1.0 or not text.strip():
        return text
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    return f"{lead}({text.strip()}:{fragment.weight:g}){trail}"
