"""sendmail's exit statuses (sysexits.h) and the exception that carries one.

Owns: the EX_* numbers and ``SendmailExit``, shared by every part of the sendmail package.
Must not: print or exit; the command-line front end turns a SendmailExit into a fatal
message on standard error and the process status.
Invariants: ``SendmailExit.status`` is always one of the EX_* constants. Reads no parameter.
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_TEMPFAIL = 75


class SendmailExit(Exception):
    """End the command with ``status``; ``message`` goes to standard error as fatal."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def usage_error(message: str) -> SendmailExit:
    """The SendmailExit for a command-line usage mistake."""
    return SendmailExit(EX_USAGE, message)
