"""SMTP replies and enhanced status codes, and the temporary-versus-permanent rule.

Owns: parsing a (possibly multi-line) reply into code, enhanced status and text; the one rule
that classifies an outcome: the enhanced status class digit wins, else the reply code's first
digit; anything unclassifiable is temporary. Also sanitising remote text before it reaches a
log line or a bounce.

Must not: import the rest of mailcore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# <sysexits.h> exit status of a delivery command -> Postfix's enhanced status and text
# (global/sys_exits.c); a 4.x.x status is a temporary failure.
SYSEXITS: Mapping[int, tuple[str, str]] = MappingProxyType({
    64: ("5.3.0", "command line usage error"),
    65: ("5.6.0", "data format error"),
    66: ("5.3.0", "cannot open input"),
    67: ("5.1.1", "user unknown"),
    68: ("5.1.2", "host name unknown"),
    69: ("5.3.0", "service unavailable"),
    70: ("5.3.0", "internal software error"),
    71: ("4.3.0", "system resource problem"),
    72: ("5.3.0", "critical OS file missing"),
    73: ("5.2.0", "can't create user output file"),
    74: ("5.3.0", "input/output error"),
    75: ("4.3.0", "temporary failure"),
    76: ("5.5.0", "remote error in protocol"),
    77: ("5.7.0", "permission denied"),
    78: ("5.3.5", "local configuration error"),
})

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_MAX_REASON = 1000


@dataclass(frozen=True)
class Reply:
    code: int
    dsn: str  # "" when the server sent no enhanced status code
    text: str

    @property
    def is_permanent(self) -> bool:
        return classify(self.code, self.dsn) == "permanent"


def parse_reply(code: int, message: str) -> Reply:
    """A reply's code and text (lines joined by a space), lifting a leading enhanced code."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    dsn = ""
    cleaned: list[str] = []
    for line in lines:
        match = _ENHANCED.match(line)
        if match:
            dsn = dsn or match.group(0)
            line = line[match.end():].strip()
        cleaned.append(line)
    return Reply(code, dsn, sanitize(" ".join(cleaned)))


def classify(code: int, dsn: str = "") -> str:
    """'success', 'temporary' or 'permanent' for a reply code and enhanced status."""
    first = dsn[:1] if dsn else ""
    if first not in ("2", "4", "5"):
        first = str(code)[:1] if 200 <= code <= 599 else ""
    return {"2": "success", "5": "permanent"}.get(first, "temporary")


def default_dsn(code: int) -> str:
    """The enhanced status Postfix assumes when a server sends none: X.0.0."""
    first = str(code)[:1]
    return f"{first}.0.0" if first in ("2", "4", "5") else "4.0.0"


def sanitize(text: str) -> str:
    """Remote text made safe for logs and bounces: printable ASCII, bounded length."""
    printable = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    collapsed = " ".join(printable.split())
    return collapsed if len(collapsed) <= _MAX_REASON else collapsed[:_MAX_REASON] + "..."
