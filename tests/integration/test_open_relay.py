"""The open-relay battery: from outside mynetworks (client bound to 127.0.0.2, mynetworks =
127.0.0.1/32) no address trick relays, whatever the routing syntax, case, trailing dot or
IDN form; the same addresses to our own domains are accepted; nothing reaches the queue for
another domain."""

from __future__ import annotations

from pathlib import Path

from support.client import raw_session, reply_lines
from support.smtpd import running_server

SETTINGS = {"mynetworks": "127.0.0.1/32", "relay_domains": "relay.test",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}
TRICKS = [
    "u%ext.example@example.test", '"u@ext.example"@example.test',
    "ext.example!u@example.test", "@example.test:u@ext.example", "u@ext.example@[127.0.0.1]",
    "u%ext.example@relay.test", '"u@ext.example"@relay.test', "ext.example!u@relay.test",
    "u@EXT.EXAMPLE", "u@ext.example.", "U@Ext.Example.", "u@bücher.example",
    "u@xn--bcher-kva.example", "u@[192.0.2.1]", "u%ext.example@[127.0.0.1]",
    '"u%ext.example"@example.test', "u@ext.example@example.test",
]
OURS = ["u@example.test", "u@EXAMPLE.TEST.", "u@MX.test", "u@relay.test",
        "u@sub.relay.test", "u@[127.0.0.1]", "postmaster"]


async def rcpt_replies(host: str, port: int, recipients: list[str],
                       local: str = "127.0.0.2") -> list[str]:
    lines = ["EHLO client.example.org", "MAIL FROM:<a@example.org> SMTPUTF8"]
    lines += [f"RCPT TO:<{r}>" for r in recipients] + ["QUIT"]
    payload = "".join(f"{line}\r\n" for line in lines).encode()
    transcript = await raw_session(host, port, payload, local_addr=(local, 0))
    return reply_lines(transcript)[3:-1]


async def test_nothing_relays_from_outside(tmp_path: Path) -> None:
    async with running_server(tmp_path, SETTINGS) as srv:
        replies = await rcpt_replies(srv.host, srv.port, TRICKS)
        assert len(replies) == len(TRICKS)
        for recipient, answer in zip(TRICKS, replies, strict=True):
            assert answer[0] in "45", (recipient, answer)
            assert not answer.startswith("250"), (recipient, answer)
        ours = await rcpt_replies(srv.host, srv.port, OURS)
        assert ours == ["250 2.1.5 Ok"] * len(OURS)
        assert "Relay access denied" in srv.log


async def test_the_same_tricks_relay_from_inside(tmp_path: Path) -> None:
    # Control: the refusals above come from the relay policy, not from address syntax.
    async with running_server(tmp_path, SETTINGS) as srv:
        replies = await rcpt_replies(srv.host, srv.port, [*TRICKS[:4], "u@ext.example"],
                                     local="127.0.0.1")
        assert replies == ["250 2.1.5 Ok"] * 5
