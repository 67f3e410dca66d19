"""mailq output against hand-written Postfix-format text (showq_compat.c layout)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from mailcore import maildrop
from mailcore.mailq import (
    HEADING,
    ListedMessage,
    ListedRecipient,
    iter_listing,
    write_listing,
)
from mailcore.queue import DEFERRED, HOLD, NewMessage, NewRecipient, Queue

UTC = time.gmtime  # fixed zone so the expected text does not depend on the machine
T = 1526703380.0  # Sat May 19 04:16:20 2018 UTC

EXPECTED = """\
-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
3CD4B1E0D1*    1253 Sat May 19 04:16:20  sender@example.com
                                         a@example.com

3CD4B1E0D2!     500 Sat May 19 04:16:20  MAILER-DAEMON
                                         b@example.com

3CD4B1E0D3     2048 Sat May 19 04:16:20  s@example.com
                          (connect to mx.example.net[192.0.2.1]:25: timed out)
                                         c@example.net
                                         d@example.net
                                     (host mx.example.org said: 450 try later)
                                         e@example.org
                                                          (reason unavailable)
                                         f@example.org

-- 3 Kbytes in 3 Requests.
"""


def _messages() -> list[ListedMessage]:
    timeout = "connect to mx.example.net[192.0.2.1]:25: timed out"
    return [
        ListedMessage("active", "3CD4B1E0D1", T, 1253, "sender@example.com",
                      (ListedRecipient("a@example.com"),)),
        ListedMessage("hold", "3CD4B1E0D2", T, 500, "", (ListedRecipient("b@example.com"),)),
        ListedMessage("deferred", "3CD4B1E0D3", T, 2048, "s@example.com", (
            ListedRecipient("c@example.net", timeout),
            ListedRecipient("d@example.net", timeout),
            ListedRecipient("e@example.org", "host mx.example.org said: 450 try later"),
            ListedRecipient("f@example.org"),
        )),
    ]


def test_listing_matches_postfix_layout() -> None:
    out = io.StringIO()
    assert write_listing(_messages(), out, localtime=UTC) == 3
    assert out.getvalue() == EXPECTED


def test_heading_and_empty_queue() -> None:
    assert HEADING == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    out = io.StringIO()
    write_listing([], out)
    assert out.getvalue() == "Mail queue is empty\n"


def test_single_request_and_control_characters() -> None:
    out = io.StringIO()
    msg = ListedMessage("incoming", "ABC", T, 10, "a\x07b@x.org", (ListedRecipient("c@x"),))
    write_listing([msg], out, localtime=UTC)
    text = out.getvalue()
    assert "a?b@x.org" in text and text.endswith("\n-- 0 Kbytes in 1 Request.\n")


def test_json_lines() -> None:
    out = io.StringIO()
    write_listing(_messages()[1:], out, as_json=True)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {"queue_name": "hold", "queue_id": "3CD4B1E0D2", "arrival_time": int(T),
                     "message_size": 500, "force_expired": False, "sender": "MAILER-DAEMON",
                     "recipients": [{"address": "b@example.com"}]}
    assert second["recipients"][0]["delay_reason"].startswith("connect to")
    assert "delay_reason" not in second["recipients"][3]


async def test_reads_real_queue_and_maildrop(tmp_path: Path) -> None:
    queue = await Queue.open(tmp_path)
    try:
        ids = []
        for n in range(5):
            ids.append(await queue.enqueue(NewMessage(
                sender=f"s{n}@x.org", recipients=(NewRecipient(f"r{n}@y.org"),),
                content_path=None, content=b"x" * 100, size=100, arrival_time=T)))
        await queue.set_state(ids[1], HOLD)
        await queue.set_state(ids[2], DEFERRED)
    finally:
        await queue.close()
    writer = maildrop.MaildropWriter(tmp_path / "maildrop")
    writer.write_line(b"hi")
    name = writer.commit(maildrop.DropEnvelope(
        sender="", recipients=(maildrop.DropRecipient("m@z.org"),), arrival_time=T, uid=7))
    listed = list(iter_listing(tmp_path, page=2))
    assert [(m.queue_name, m.queue_id) for m in listed] == [
        ("maildrop", name), ("incoming", ids[0]), ("incoming", ids[3]),
        ("incoming", ids[4]), ("deferred", ids[2]), ("hold", ids[1])]
    assert listed[5].recipients == (ListedRecipient("r1@y.org"),)
    assert listed[0].sender == "" and listed[0].size == 3


def test_missing_queue_is_empty(tmp_path: Path) -> None:
    assert list(iter_listing(tmp_path / "nothing")) == []
