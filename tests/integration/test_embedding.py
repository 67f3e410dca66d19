"""The README's embedding example: a MailSystem inside a test, on a kernel-chosen port."""

from __future__ import annotations

import io

import aiosmtplib
import pytest

from mailcore.app import MailSystem
from mailcore.config import from_mapping
from mailcore.log import MailLog

pytestmark = pytest.mark.integration


async def test_embedded_mail_system_accepts_mail(tmp_path):
    config = from_mapping(
        {"myhostname": "mx.test", "queue_directory": str(tmp_path / "q"),
         "smtpd_peername_lookup": "no", "mynetworks": "127.0.0.0/8",
         "local_recipient_maps": ""},
        config_dir=tmp_path, master_cf="127.0.0.1:0 inet n - n - - smtpd\n")
    log = io.StringIO()
    async with MailSystem(config, log=MailLog(hostname="mx.test", stream=log)) as mail:
        listener = mail.listening()[0]
        assert listener.host == "127.0.0.1" and listener.port > 0
        _, reply = await aiosmtplib.send(
            "Subject: embedded\r\n\r\nhi\r\n", sender="a@example.org",
            recipients=["b@mx.test"], hostname=listener.host, port=listener.port,
            local_hostname="client.test")
        queue_id = reply.rsplit(" ", 1)[1]
        message = await mail.queue.get(queue_id)
        assert message is not None and [r.address for r in message.recipients] == ["b@mx.test"]
    assert "daemon started" in log.getvalue()
