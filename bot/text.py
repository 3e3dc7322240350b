"""Text from users and files made safe to parse and to echo: one place for every face.

``neutral`` is what any text read from a user, a file or a worker goes through before it is
parsed, stored or shown: ANSI escape sequences, control characters (BEL, ESC, C1 controls…) and
Unicode format characters (zero-width spaces, bidi overrides) are removed; line breaks and tabs
stay. ``hide_paths`` keeps an operator's absolute file paths out of what a chat is shown.
"""

from __future__ import annotations

import re
import unicodedata

# ESC [ … final byte (CSI), ESC ] … BEL or ESC \ (OSC), and two-character escapes (ESC c …).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_KEPT = frozenset("\n\t")
# An absolute path: /…, ~/…, C:\… or \\server\… — up to the next space, quote or bracket.
_PATH = re.compile(r"(?<![\w.:/\\])(?:~?/|[A-Za-z]:[\\/]|\\\\)[^\s'\"`<>()\[\]{},;]*")


def neutral(text: str) -> str:
    """``text`` without escape sequences, control characters (but line breaks and tabs) and format characters."""
    if text.isprintable():
        return text  # the common case, at C speed
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    return "".join(ch for ch in text if ch in _KEPT or unicodedata.category(ch) not in ("Cc", "Cf"))


def hide_paths(text: str) -> str:
    """``text`` with each absolute file path cut to its last part (``/srv/models/sd.ckpt`` → ``sd.ckpt``)."""
    return _PATH.sub(_last_part, text)


def _last_part(match: re.Match[str]) -> str:
    parts = [part for part in re.split(r"[\\/]+", match.group()) if part and part != "~" and not part.endswith(":")]
    return parts[-1] if parts else "…"
