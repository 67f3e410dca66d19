"""A streaming MIME state machine: which lines are primary, MIME or nested headers, which are body.

Owns: the one-pass MIME structure tracking that Postfix's mime_state(3) does for cleanup(8):
joining a multi-line header into one logical header (continuation lines joined by "\\n"),
Content-Type parsing (multipart boundaries, quoted or not; message/rfc822), the boundary stack
bounded by mime_nesting_limit, and per-part body offsets used by body_checks_size_limit.

Must not: do I/O, look anything up, decode transfer encodings, or change what it is fed (apart
from normalising the obsolete ``Name :`` form to ``Name:``, as Postfix does).

Invariants: memory is the current header (at most header_size_limit bytes) plus the boundary
stack (at most mime_nesting_limit + 1 boundaries of mime_boundary_length_limit bytes each);
events come out in input order; every fed line comes back out exactly once, as part of a
HeaderEvent or as a BodyEvent. Parameters: header_size_limit, mime_nesting_limit,
mime_boundary_length_limit, line_length_limit, disable_mime_input_processing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

_LWSP = b" \t\r\n"
_TSPECIALS = b'()<>@,;:\\"/[]?='


class HeaderKind(enum.StrEnum):
    """Where a header sits; values are the ``kind`` words ContentChecks takes."""

    PRIMARY = "primary"  # the message's own header block
    MIME = "mime"  # after a multipart boundary
    NESTED = "nested"  # at the start of an attached message/rfc822


class LineClass(enum.Enum):
    PRIMARY_HEADER = "primary_header"
    MIME_HEADER = "mime_header"
    NESTED_HEADER = "nested_header"
    BODY = "body"


class _State(enum.Enum):
    PRIMARY = HeaderKind.PRIMARY
    MULTIPART = HeaderKind.MIME
    NESTED = HeaderKind.NESTED
    BODY = None


class _CType(enum.Enum):
    OTHER = 0
    TEXT = 1
    MESSAGE = 2
    MULTIPART = 3


class _SType(enum.Enum):
    OTHER = 0
    PLAIN = 1
    RFC822 = 2
    PARTIAL = 3
    EXTERNAL_BODY = 4


_LINE_CLASS = {
    _State.PRIMARY: LineClass.PRIMARY_HEADER,
    _State.MULTIPART: LineClass.MIME_HEADER,
    _State.NESTED: LineClass.NESTED_HEADER,
    _State.BODY: LineClass.BODY,
}


@dataclass(frozen=True)
class HeaderEvent:
    """One complete logical header, physical lines joined by b"\\n"."""

    kind: HeaderKind
    text: bytes
    truncated: bool = False

    @property
    def name(self) -> str:
        """The lower-cased header name (always ASCII: is_header guarantees it)."""
        return self.text.split(b":", 1)[0].decode("ascii").lower()

    @property
    def lines(self) -> list[bytes]:
        return self.text.split(b"\n")


@dataclass(frozen=True)
class HeadersEnd:
    """The primary header block is over (the point where cleanup adds missing headers)."""


@dataclass(frozen=True)
class BodyEvent:
    """One body line (boundaries, preamble and header/body separators included).

    ``offset`` counts from the start of the current body part as Postfix does: every line
    counts its length plus one, per line_length_limit chunk. ``inserted`` marks the blank line
    Postfix adds when the primary headers end with a non-header line instead of a blank one."""

    line: bytes
    offset: int
    inserted: bool = False


Event = HeaderEvent | HeadersEnd | BodyEvent


@dataclass(frozen=True)
class MimeLimits:
    header_size_limit: int = 102400
    mime_nesting_limit: int = 100
    mime_boundary_length_limit: int = 2048
    line_length_limit: int = 2048
    disable_mime: bool = False


@dataclass(frozen=True)
class _Boundary:
    text: bytes
    def_ctype: _CType
    def_stype: _SType


def header_name_length(line: bytes) -> int:
    """Length of the header name when ``line`` starts a header (name, optional blanks, ':').

    0 when it does not: the name is printable ASCII without ':' and may not start with blanks."""
    length = 0
    blanks = False
    for c in line:
        if c == 0x3A:
            return length
        if c in (0x20, 0x09):
            if length == 0:
                return 0
            blanks = True
            continue
        if c < 0x21 or c > 0x7E or blanks:
            return 0
        length += 1
    return 0


def chunk_count(length: int, line_length_limit: int) -> int:
    """How many records Postfix's smtpd makes of one line of this length."""
    if line_length_limit <= 0 or length <= line_length_limit:
        return 1
    return -(-length // line_length_limit)


@dataclass(frozen=True)
class _Token:
    kind: str  # "token", "qstring", or the special/control character itself
    value: bytes


def header_tokens(data: bytes, pos: int, *, specials: bytes = _TSPECIALS,
                  terminator: int = 0x3B, capacity: int = 3) -> tuple[int, list[_Token], int]:
    """RFC 822 tokens up to ``terminator`` as Postfix's header_token() finds them.

    Returns (count, tokens, next position); count is -1 when the input was exhausted before
    any token. Comments are skipped, quoted strings are unquoted and unfolded, tokens past
    ``capacity`` are consumed but not kept."""
    tokens: list[_Token] = []
    end = len(data)
    ended = True
    while pos < end:
        c = data[pos]
        pos += 1
        if c in _LWSP:
            continue
        if c == terminator:
            ended = False
            break
        if c == 0x28:  # comment, possibly nested
            pos = _skip_comment(data, pos)
            continue
        if c == 0x22:
            value, pos = _quoted(data, pos)
            if len(tokens) < capacity:
                tokens.append(_Token("qstring", value))
            continue
        if c in specials or c < 0x20 or c == 0x7F:
            if len(tokens) < capacity:
                tokens.append(_Token(chr(c), bytes([c])))
            continue
        start = pos - 1
        while pos < end and not _breaks_token(data[pos], specials):
            pos += 1
        if len(tokens) < capacity:
            tokens.append(_Token("token", data[start:pos]))
    if not tokens and ended:
        return -1, tokens, pos
    return len(tokens), tokens, pos


def _breaks_token(c: int, specials: bytes) -> bool:
    return c in _LWSP or c < 0x20 or c == 0x7F or c in specials


def _skip_comment(data: bytes, pos: int) -> int:
    level = 1
    while pos < len(data):
        c = data[pos]
        pos += 1
        if c == 0x28:
            level += 1
        elif c == 0x29:
            level -= 1
            if level == 0:
                break
        elif c == 0x5C:
            pos += 1
    return min(pos, len(data))


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos < len(data):
        c = data[pos]
        pos += 1
        if c == 0x22:
            break
        if c == 0x0A:  # a folded quoted string loses the blanks before the fold
            while out and out[-1] in _LWSP:
                out.pop()
            continue
        if c == 0x5C:
            if pos >= len(data):
                break
            c = data[pos]
            pos += 1
        out.append(c)
    return bytes(out), pos


def _is_token(token: _Token, word: bytes) -> bool:
    return token.kind == "token" and token.value.lower() == word


class MimeTracker:
    """Feed message lines (no terminators) with ``feed``; call ``finish`` at the end."""

    def __init__(self, limits: MimeLimits | None = None) -> None:
        self.limits = limits or MimeLimits()
        self._state = _State.PRIMARY
        self._ctype = _CType.TEXT
        self._stype = _SType.PLAIN
        self._stack: list[_Boundary] = []
        self._header: bytearray | None = None
        self._truncated = False
        self._body_offset = 0
        self.line_class = LineClass.PRIMARY_HEADER  # the class of the line fed last
        self.nesting_exceeded: bytes | None = None  # the Content-Type header that overflowed

    @property
    def in_headers(self) -> bool:
        return self._state is not _State.BODY

    @property
    def depth(self) -> int:
        """Open multipart boundaries."""
        return len(self._stack)

    def feed(self, line: bytes) -> list[Event]:
        events: list[Event] = []
        if self._state is not _State.BODY:
            if self._header is not None:
                if line[:1] in (b" ", b"\t"):
                    self._append(b"\n" + line)
                    self.line_class = _LINE_CLASS[self._state]
                    return events
                events.append(self._flush())
            name_len = header_name_length(line)
            if name_len:
                self._start_header(line, name_len)
                self.line_class = _LINE_CLASS[self._state]
                return events
            self._end_header_block(line, events)
        self.line_class = LineClass.BODY
        self._body_line(line, events)
        return events

    def finish(self) -> list[Event]:
        """End of message: the pending header, and the end of the primary block if still open."""
        events: list[Event] = []
        if self._header is not None:
            events.append(self._flush())
        if self._state is _State.PRIMARY:
            events.append(HeadersEnd())
        self._state = _State.BODY
        return events

    # --- headers ---------------------------------------------------------------------------
    def _start_header(self, line: bytes, name_len: int) -> None:
        # "Name :" becomes "Name:" so that every consumer sees one form.
        rest = line[name_len:].lstrip(b" \t")
        self._header = bytearray()
        self._truncated = False
        self._append(line[:name_len] + rest)

    def _append(self, data: bytes) -> None:
        assert self._header is not None
        room = self.limits.header_size_limit - len(self._header)
        if len(data) > room:
            self._truncated = True
            data = data[: max(room, 0)]
        self._header += data

    def _flush(self) -> HeaderEvent:
        assert self._header is not None
        text = bytes(self._header)
        self._header = None
        if not self.limits.disable_mime and text.split(b":", 1)[0].lower() == b"content-type":
            self._content_type(text)
        kind = self._state.value
        assert isinstance(kind, HeaderKind)
        return HeaderEvent(kind, text, self._truncated)

    def _content_type(self, text: bytes) -> None:
        pos = text.index(b":") + 1
        count, tokens, pos = header_tokens(text, pos)
        if count <= 0:
            self._ctype = _CType.OTHER
            return
        first = tokens[0]
        sub = tokens[2] if count >= 3 and tokens[1].kind == "/" else None
        if _is_token(first, b"text"):
            self._ctype = _CType.TEXT
            self._stype = _SType.PLAIN if sub and _is_token(sub, b"plain") else _SType.OTHER
        elif _is_token(first, b"message"):
            self._ctype = _CType.MESSAGE
            self._stype = _SType.OTHER
            for word, stype in ((b"rfc822", _SType.RFC822), (b"partial", _SType.PARTIAL),
                                (b"external-body", _SType.EXTERNAL_BODY)):
                if sub and _is_token(sub, word):
                    self._stype = stype
        elif _is_token(first, b"multipart"):
            self._ctype = _CType.MULTIPART
            digest = sub is not None and _is_token(sub, b"digest")
            default = (_CType.MESSAGE, _SType.RFC822) if digest else (_CType.TEXT, _SType.PLAIN)
            self._boundaries(text, pos, default)
        # Any other type leaves the current (default) type alone, exactly as Postfix does.

    def _boundaries(self, text: bytes, pos: int, default: tuple[_CType, _SType]) -> None:
        # Every boundary parameter is pushed (several are illegal, but may hide content),
        # and the value's token type is ignored on purpose.
        while True:
            count, tokens, pos = header_tokens(text, pos)
            if count < 0:
                return
            if count >= 3 and _is_token(tokens[0], b"boundary") and tokens[1].kind == "=":
                if len(self._stack) > self.limits.mime_nesting_limit:
                    if self.nesting_exceeded is None:
                        self.nesting_exceeded = text
                    continue
                value = tokens[2].value[: self.limits.mime_boundary_length_limit]
                self._stack.append(_Boundary(value, *default))

    def _end_header_block(self, line: bytes, events: list[Event]) -> None:
        if self._state is _State.PRIMARY:
            events.append(HeadersEnd())
        if line == b"":
            if self._ctype is _CType.MESSAGE and self._stype is _SType.RFC822:
                self._state = _State.NESTED
                self._ctype, self._stype = _CType.TEXT, _SType.PLAIN
            elif self._ctype is _CType.MULTIPART:
                self._state = _State.BODY
                self._ctype, self._stype = _CType.OTHER, _SType.OTHER
            else:
                self._state = _State.BODY
            self._body_offset = 0
            return
        if self._state is _State.PRIMARY:
            # Postfix supplies the missing header/body separator, but only for the primary
            # block: inside attachments it would break signatures.
            events.append(BodyEvent(b"", self._body_offset, inserted=True))
        self._state = _State.BODY
        self._body_offset = 0

    # --- body ------------------------------------------------------------------------------
    def _body_line(self, line: bytes, events: list[Event]) -> None:
        if self._stack and len(line) > 2 and line.startswith(b"--"):
            self._boundary_line(line)
        events.append(BodyEvent(line, self._body_offset))
        self._body_offset += len(line) + chunk_count(len(line), self.limits.line_length_limit)

    def _boundary_line(self, line: bytes) -> None:
        # Innermost first; a match on an outer boundary closes the parts inside it, which is
        # how a missing closing boundary is recovered from. Trailing text is ignored.
        for index in range(len(self._stack) - 1, -1, -1):
            boundary = self._stack[index]
            end = 2 + len(boundary.text)
            if not line.startswith(boundary.text, 2):
                continue
            del self._stack[index + 1 :]
            if line[end : end + 2] == b"--":
                self._stack.pop()
                self._state = _State.BODY
                self._ctype, self._stype = _CType.OTHER, _SType.OTHER
                self._body_offset = 0
            else:
                self._state = _State.MULTIPART
                self._ctype, self._stype = boundary.def_ctype, boundary.def_stype
            return
