"""Error types shared by every module.

Every error that comes from bad input (main.cf, master.cf, a lookup table, the command line)
carries the file and line it came from, so the user sees ``FILE, line N: what was expected``
and never a Python traceback.
"""

from __future__ import annotations


class MailcoreError(Exception):
    """Base of every error mailcore reports to a user."""


class ConfigError(MailcoreError):
    """Bad configuration or table input, located by file and line where known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        if self.file and self.line:
            return f"{self.file}, line {self.line}: {self.message}"
        if self.file:
            return f"{self.file}: {self.message}"
        return self.message


class TableError(ConfigError):
    """A lookup table could not be opened, parsed or queried."""


class UsageError(MailcoreError):
    """A command was called with words it does not take."""
