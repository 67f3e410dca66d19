"""header_checks and body_checks seen from an SMTP client (header_checks(5)): REJECT answers
at the end of DATA, DISCARD answers 250 and queues nothing, HOLD lands in the hold queue,
PREPEND and REPLACE change the queued content."""

from __future__ import annotations

import aiosmtplib
import pytest
from support.smtpd import running_server

pytestmark = pytest.mark.integration


async def send(srv, body: str) -> str:  # type: ignore[no-untyped-def]
    _, reply = await aiosmtplib.send(body, sender="a@client.test", recipients=["u@mx.test"],
                                     hostname=srv.host, port=srv.port,
                                     local_hostname="client.test")
    return reply


async def test_content_checks_over_smtp(tmp_path):
    (tmp_path / "header_checks").write_text(
        "/^Subject:.*forbidden/ REJECT Subject not allowed here\n"
        "/^Subject:.*park me/ HOLD parked for review\n"
        "/^X-Mailer: (.*)/ REPLACE X-Mailer: hidden\n"
        "/^Subject:.*tag me/ PREPEND X-Tagged: yes\n")
    (tmp_path / "body_checks").write_text("/^drop this message$/ DISCARD\n")
    settings = {"header_checks": f"regexp:{tmp_path}/header_checks",
                "body_checks": f"regexp:{tmp_path}/body_checks"}
    async with running_server(tmp_path, settings) as srv:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(srv, "Subject: something forbidden\r\n\r\nx\r\n")
        assert refused.value.code == 550
        assert refused.value.message == "5.7.1 Subject not allowed here"

        reply = await send(srv, "Subject: hi\r\n\r\nfine\r\ndrop this message\r\n")
        assert reply.startswith("2.0.0 Ok: queued as ")

        held = (await send(srv, "Subject: please park me\r\n\r\nx\r\n")).rsplit(" ", 1)[1]
        tagged = (await send(srv, "Subject: tag me\r\nX-Mailer: Secret 1.0\r\n\r\nx\r\n"
                             )).rsplit(" ", 1)[1]
        messages = {m.queue_id: m for m in await srv.messages()}
        assert set(messages) == {held, tagged}, "the discarded message must not be queued"
        assert messages[held].state == "hold"
        content = await srv.content(tagged)
        assert b"\nX-Tagged: yes\nSubject: tag me\n" in content
        assert b"\nX-Mailer: hidden\n" in content and b"Secret" not in content
    assert "reject: header Subject: something forbidden from unknown[127.0.0.1]" in srv.log
