"""sendmail -t: recipients taken from the message's primary header section.

Owns: ``HeaderExtractor`` (To/Cc/Bcc, or only Resent-To/Cc/Bcc once a Resent- recipient
header is seen, as Postfix's sendmail -t does) and the cap and validation applied to what it
found.
Must not: read the input itself (copy_message in submit.py feeds it line by line) or decide
the envelope.
Invariants: only header lines before the first non-header line are looked at; a header
longer than header_size_limit or an unparseable list is SendmailExit(EX_DATAERR); a refused
address is EX_NOUSER. Parameters (passed in): header_size_limit, smtpd_recipient_limit.
"""

from __future__ import annotations

from mailcore.address import AddressError
from mailcore.sendmail.addrlist import parse_address_list, validate_address
from mailcore.sendmail.exits import EX_DATAERR, EX_NOUSER, SendmailExit

RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
RESENT_HEADERS = frozenset({"resent-to", "resent-cc", "resent-bcc"})


class HeaderExtractor:
    """Collects To/Cc/Bcc (or, once a Resent- header is seen, only Resent-To/Cc/Bcc)
    addresses from the primary header section, as Postfix's sendmail -t does."""

    def __init__(self, header_size_limit: int):
        self._limit = header_size_limit
        self._current: list[bytes] = []
        self._size = 0
        self.in_headers = True
        self.normal: list[str] = []
        self.resent: list[str] = []
        self.resent_seen = False

    def feed(self, line: bytes) -> None:
        if not self.in_headers:
            return
        if line[:1] in (b" ", b"\t") and self._current:
            self._add(line)
            return
        self._finish()
        name, colon, _ = line.partition(b":")
        if colon and name.rstrip(b" \t") and all(33 <= c <= 126 for c in name.rstrip(b" \t")):
            self._add(line)
        else:
            self.in_headers = False

    def _add(self, line: bytes) -> None:
        self._size += len(line) + 1
        if self._size > self._limit:
            raise SendmailExit(EX_DATAERR, "unable to extract recipients: "
                               "message header length exceeds safety limit")
        self._current.append(line)

    def _finish(self) -> None:
        if not self._current:
            return
        text = b"\n".join(self._current).decode("utf-8", "surrogateescape")
        self._current, self._size = [], 0
        name, _, value = text.partition(":")
        name = name.strip().lower()
        if name in RESENT_HEADERS:
            self.resent_seen = True
            target = self.resent
        elif name in RECIPIENT_HEADERS and not self.resent_seen:
            target = self.normal
        else:
            return
        try:
            target.extend(parse_address_list(value))
        except AddressError as exc:
            raise SendmailExit(EX_DATAERR, f"unable to extract recipients from {name}: "
                               f"{exc}") from None

    def close(self) -> list[str]:
        self._finish()
        self.in_headers = False
        return self.resent if self.resent_seen else self.normal


def extracted_recipients(extractor: HeaderExtractor, limit: int) -> list[str]:
    """The validated recipients ``extractor`` found; SendmailExit past ``limit`` (0: none)."""
    found = extractor.close()
    if limit and len(found) > limit:
        raise SendmailExit(EX_DATAERR, f"too many recipients in message headers "
                           f"({len(found)}, limit {limit})")
    valid = []
    for text in found:
        try:
            valid.append(validate_address(text))
        except AddressError as exc:
            raise SendmailExit(EX_NOUSER, f"bad recipient address {text!r} in message "
                               f"header: {exc}") from None
    return valid
