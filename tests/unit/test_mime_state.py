"""MimeTracker: header/body classification as Postfix's mime_state(3) does it for cleanup(8)."""

from __future__ import annotations

from mailcore.checks.mime import (
    BodyEvent,
    Event,
    HeaderEvent,
    HeaderKind,
    HeadersEnd,
    LineClass,
    MimeLimits,
    MimeTracker,
    header_name_length,
    header_tokens,
)

P, M, N = HeaderKind.PRIMARY, HeaderKind.MIME, HeaderKind.NESTED


def run(text: bytes, limits: MimeLimits | None = None) -> tuple[MimeTracker, list[Event]]:
    tracker = MimeTracker(limits)
    events: list[Event] = []
    for line in text.split(b"\n"):
        events += tracker.feed(line)
    events += tracker.finish()
    return tracker, events


def headers(events: list[Event]) -> list[tuple[HeaderKind, bytes]]:
    return [(e.kind, e.text) for e in events if isinstance(e, HeaderEvent)]


def body(events: list[Event]) -> list[bytes]:
    return [e.line for e in events if isinstance(e, BodyEvent)]


MIXED = b"""\
From: a@example.com
Subject: a multi-line
\tsubject
MIME-Version: 1.0
Content-Type: multipart/mixed;
 boundary="outer; \\"x\\""

preamble --outer; "x" is not a boundary here
--outer; "x"
Content-Type: text/plain; charset=utf-8

hello
--outer; "x"
Content-Type: message/rfc822
Content-Disposition: attachment

From: inner@example.org
Subject: forwarded
Content-Type: text/plain

inner body
--outer; "x"--
epilogue"""


def test_multipart_mixed_with_attached_message() -> None:
    _, events = run(MIXED)
    assert headers(events) == [
        (P, b"From: a@example.com"),
        (P, b"Subject: a multi-line\n\tsubject"),
        (P, b"MIME-Version: 1.0"),
        (P, b'Content-Type: multipart/mixed;\n boundary="outer; \\"x\\""'),
        (M, b"Content-Type: text/plain; charset=utf-8"),
        (M, b"Content-Type: message/rfc822"),
        (M, b"Content-Disposition: attachment"),
        (N, b"From: inner@example.org"),
        (N, b"Subject: forwarded"),
        (N, b"Content-Type: text/plain"),
    ]
    assert body(events) == [
        b"", b'preamble --outer; "x" is not a boundary here', b'--outer; "x"',
        b"", b"hello", b'--outer; "x"',
        b"", b"", b"inner body", b'--outer; "x"--', b"epilogue",
    ]
    assert sum(isinstance(e, HeadersEnd) for e in events) == 1
    end = events.index(HeadersEnd())
    assert events[end - 1] == HeaderEvent(P, b'Content-Type: multipart/mixed;\n boundary="outer; '
                                             b'\\"x\\""')


def test_line_classes_follow_the_structure() -> None:
    tracker = MimeTracker()
    classes = []
    for line in MIXED.split(b"\n"):
        tracker.feed(line)
        classes.append(tracker.line_class)
    lines = MIXED.split(b"\n")
    assert classes[lines.index(b"\tsubject")] is LineClass.PRIMARY_HEADER
    assert classes[lines.index(b"Content-Disposition: attachment")] is LineClass.MIME_HEADER
    assert classes[lines.index(b"From: inner@example.org")] is LineClass.NESTED_HEADER
    assert classes[lines.index(b"inner body")] is LineClass.BODY
    assert classes[lines.index(b'--outer; "x"--')] is LineClass.BODY


def test_unquoted_boundary_nested_multiparts_and_missing_final_boundary() -> None:
    text = b"""\
Content-Type: multipart/mixed; boundary=A

--A
Content-Type: multipart/alternative; boundary=B

--B
Content-Type: text/plain

plain
--B
Content-Type: text/html

<p>html
--A
X-After-Inner: closed by the outer boundary

tail
--A--
--B
X-Not: a header"""
    tracker, events = run(text)
    assert headers(events) == [
        (P, b"Content-Type: multipart/mixed; boundary=A"),
        (M, b"Content-Type: multipart/alternative; boundary=B"),
        (M, b"Content-Type: text/plain"),
        (M, b"Content-Type: text/html"),
        (M, b"X-After-Inner: closed by the outer boundary"),
    ]
    # After --A-- both boundaries are gone: --B and what follows are plain body.
    assert body(events)[-2:] == [b"--B", b"X-Not: a header"]
    assert tracker.depth == 0


def test_boundary_prefix_match_and_trailing_text() -> None:
    text = b"""\
Content-Type: multipart/mixed; boundary="b"

--b   trailing junk is ignored
X-Part: one

--bb
X-Part: two, because "--bb" starts with --b"""
    _, events = run(text)
    assert headers(events)[1:] == [(M, b"X-Part: one"),
                                   (M, b'X-Part: two, because "--bb" starts with --b')]


def test_boundary_in_comment_and_quoted_text_is_not_taken() -> None:
    text = b"""\
Content-Type: multipart/mixed; (boundary=fake) x="boundary=fake2"; boundary=real

--fake
X-No: body
--fake2
--real
X-Yes: header"""
    _, events = run(text)
    assert headers(events)[1:] == [(M, b"X-Yes: header")]
    assert b"X-No: body" in body(events)


def test_multipart_digest_parts_default_to_message_rfc822() -> None:
    text = b"""\
Content-Type: multipart/digest; boundary=d

--d

Subject: inside a digest part
--d--"""
    _, events = run(text)
    assert (N, b"Subject: inside a digest part") in headers(events)


def test_missing_separator_inserts_blank_line_only_after_primary_headers() -> None:
    text = b"""\
Subject: x
this is body text
Content-Type: not a header any more"""
    _, events = run(text)
    assert isinstance(events[1], HeadersEnd)
    assert events[2] == BodyEvent(b"", 0, inserted=True)
    assert body(events) == [b"", b"this is body text", b"Content-Type: not a header any more"]
    part = b"Content-Type: multipart/mixed; boundary=q\n\n--q\nX-H: 1\nbody without blank\n--q--"
    _, events = run(part)
    assert not [e for e in events if isinstance(e, BodyEvent) and e.inserted]
    assert body(events) == [b"", b"--q", b"body without blank", b"--q--"]


def test_obsolete_space_before_colon_is_normalised() -> None:
    _, events = run(b"Subject  : hi\nX-Y\t:z\n\nbody")
    assert headers(events) == [(P, b"Subject: hi"), (P, b"X-Y:z")]


def test_header_name_rules() -> None:
    assert header_name_length(b"Subject: x") == 7
    assert header_name_length(b"Subject :x") == 7
    assert header_name_length(b" Subject: x") == 0
    assert header_name_length(b"Sub ject: x") == 0
    assert header_name_length(b": x") == 0
    assert header_name_length(b"Sub\xc3\xa9ject: x") == 0
    assert header_name_length(b"no colon") == 0


def test_header_size_limit_bounds_the_buffer() -> None:
    limits = MimeLimits(header_size_limit=30)
    text = b"Subject: " + b"x" * 20 + b"\n\t" + b"y" * 50 + b"\n\tmore\nTo: b\n\nbody"
    _, events = run(text, limits)
    first = events[0]
    assert isinstance(first, HeaderEvent)
    assert first.truncated and len(first.text) == 30
    assert first.text.startswith(b"Subject: xxxx")
    assert headers(events)[1] == (P, b"To: b")


def test_nesting_limit_stops_pushing_boundaries() -> None:
    lines = [b"Content-Type: multipart/mixed; boundary=b0", b""]
    for level in range(1, 5):
        lines += [f"--b{level - 1}".encode(),
                  f"Content-Type: multipart/mixed; boundary=b{level}".encode(), b""]
    lines += [b"--b4", b"X-Deep: yes", b""]
    tracker, events = run(b"\n".join(lines), MimeLimits(mime_nesting_limit=2))
    assert tracker.nesting_exceeded == b"Content-Type: multipart/mixed; boundary=b3"
    assert (M, b"X-Deep: yes") not in headers(events)
    tracker, events = run(b"\n".join(lines), MimeLimits(mime_nesting_limit=10))
    assert tracker.nesting_exceeded is None
    assert (M, b"X-Deep: yes") in headers(events)


def test_body_offsets_restart_per_part_and_count_chunks() -> None:
    text = b"Content-Type: multipart/mixed; boundary=z\n\npre\n--z\n\nabc\nde\n--z--\nepi"
    _, events = run(text, MimeLimits(line_length_limit=2))
    offsets = [(e.line, e.offset) for e in events if isinstance(e, BodyEvent)]
    # "abc" is two 2-byte records in Postfix: 3 bytes + 2 record ends.
    assert offsets == [(b"", 0), (b"pre", 1), (b"--z", 6), (b"", 0), (b"abc", 1),
                       (b"de", 6), (b"--z--", 0), (b"epi", 8)]


def test_disable_mime_makes_everything_after_primary_headers_body() -> None:
    text = b"Content-Type: multipart/mixed; boundary=a\n\n--a\nX-H: 1\n\nbody"
    _, events = run(text, MimeLimits(disable_mime=True))
    assert headers(events) == [(P, b"Content-Type: multipart/mixed; boundary=a")]
    assert body(events) == [b"", b"--a", b"X-H: 1", b"", b"body"]


def test_headers_only_message_and_eight_bit_header() -> None:
    tracker = MimeTracker()
    assert tracker.feed("Subject: caf\u00e9 \xff".encode("utf-8", "surrogateescape")) == []
    events = tracker.finish()
    assert events == [HeaderEvent(P, "Subject: caf\u00e9 \xff".encode()), HeadersEnd()]


def test_header_tokens_like_postfix() -> None:
    data = b' multipart / mixed (comment; x) ; boundary = "a\\"b\n c" ; ;'
    count, tokens, pos = header_tokens(data, 0)
    assert count == 3 and [t.value for t in tokens] == [b"multipart", b"/", b"mixed"]
    count, tokens, pos = header_tokens(data, pos)
    assert [t.kind for t in tokens] == ["token", "=", "qstring"]
    assert tokens[2].value == b'a"b c'
    count, tokens, pos = header_tokens(data, pos)
    assert count == 0
    assert header_tokens(data, pos)[0] == -1
