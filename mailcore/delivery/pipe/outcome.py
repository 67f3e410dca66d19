"""pipe(8) outcomes: a finished command's exit status and output as one delivery result.

Owns: the classification Postfix's pipe_command() applies — success on 0, a leading RFC 3463
status code in the output first, then the sysexits table, else a bounce with "Command died
with status N"; a signal or the time limit defers — and the printable form of the output.
Must not: run or kill processes, or read the message.
Invariants: the result status is SENT, DEFERRED or BOUNCED with a DSN of the same class
(4.x.x only with DEFERRED, 5.x.x only with BOUNCED, 2.0.0 only with SENT).
Parameters: none.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.model import BOUNCED, DEFERRED, SENT
from mailcore.status import SYSEXITS

_DSN_CLASSES = "245"


@dataclass(frozen=True)
class Outcome:
    """What happened to the whole request: SENT, DEFERRED or BOUNCED, status and reason."""

    status: str
    dsn: str
    reason: str


def printable_output(output: bytes) -> str:
    """Command output as Postfix logs it: tabs and newlines become spaces, other
    non-printable bytes underscores."""
    text = "".join(" " if b in (9, 10) else chr(b) if 32 <= b < 127 else "_" for b in output)
    return text.strip()


def leading_dsn(text: str) -> tuple[str, str] | None:
    """``("5.1.1", "rest")`` when text starts with an RFC 3463 status code (dsn_valid)."""
    head, _, rest = text.partition(" ")
    pieces = head.split(".")
    if (len(pieces) == 3 and pieces[0] in tuple(_DSN_CLASSES)
            and all(p.isascii() and p.isdigit() and 1 <= len(p) <= 3 for p in pieces[1:])):
        return head, rest.strip()
    return None


def command_outcome(returncode: int | None, output: bytes, command: str, *,
                    timed_out: bool = False) -> Outcome:
    """A finished (or killed) command's result, as pipe_command() classifies it."""
    log = printable_output(output)
    suffix = f". Command output: {log}" if log else ""
    if timed_out:
        return Outcome(DEFERRED, "4.3.0", f'Command time limit exceeded: "{command}"{suffix}')
    if returncode is None or returncode < 0:
        number = -(returncode or 0)
        return Outcome(DEFERRED, "4.3.0", f'Command died with signal {number}: "{command}"{suffix}')
    if returncode == 0:
        return Outcome(SENT, "2.0.0", log)
    found = leading_dsn(log)
    if found is not None:
        dsn, text = found
        if dsn[0] == "4":
            return Outcome(DEFERRED, dsn, text)
        return Outcome(BOUNCED, dsn if dsn[0] == "5" else "5.0.0", text)
    if returncode in SYSEXITS:
        dsn, text = SYSEXITS[returncode]
        return Outcome(DEFERRED if dsn[0] == "4" else BOUNCED, dsn, text + suffix)
    return Outcome(BOUNCED, "5.3.0",
                   f'Command died with status {returncode}: "{command}"{suffix}')


def success_reason(service: str, output: str) -> str:
    return f"delivered via {service} service" + (f" ({output[:100]})" if output else "")

