"""smtpd access control over real SMTP on loopback: each restriction family and every
access-table action end to end (queue state, queued content, attributes, log lines), DNS
block lists against the test DNS server, recipient validation, and a table edited between
two sessions without a reload. Clients bind to 127.0.0.2 to be outside mynetworks."""

from __future__ import annotations

from pathlib import Path

from support.client import raw_session, reply_lines
from support.dnsserver import DnsServer
from support.smtpd import RunningServer, running_server

OUTSIDE = ("127.0.0.2", 0)


async def session(srv: RunningServer, *lines: str, body: bool = False) -> list[str]:
    payload = "".join(f"{line}\r\n" for line in ("EHLO client.example.org", *lines))
    if body:
        payload += "DATA\r\nSubject: test\r\n\r\nhello\r\n.\r\n"
    payload += "QUIT\r\n"
    transcript = await raw_session(srv.host, srv.port, payload.encode(), local_addr=OUTSIDE)
    return reply_lines(transcript)[2:-1]  # without banner, EHLO and QUIT replies


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return f"texthash:{tmp_path / name}"


async def test_access_actions_end_to_end(tmp_path: Path) -> None:
    access = write(tmp_path, "senders", "\n".join([
        "held@example.org HOLD", "dropped@example.org DISCARD",
        "redir@example.org REDIRECT trap@example.test",
        "marked@example.org PREPEND X-Access-Note: seen by smtpd",
        "filtered@example.org FILTER scan:[127.0.0.1]:10025",
        "watched@example.org WARN watch this one",
        "refused@example.org REJECT not from you",
        "later@example.org DEFER come back"]) + "\n")
    settings = {"smtpd_sender_restrictions": f"check_sender_access {access}"}
    async with running_server(tmp_path, settings) as srv:
        rcpt = "RCPT TO:<b@example.test>"
        assert (await session(srv, "MAIL FROM:<held@example.org>", rcpt, body=True)
                )[-1].startswith("250 2.0.0 Ok: queued as")
        assert await session(srv, "MAIL FROM:<refused@example.org>", rcpt) == [
            "250 2.1.0 Ok",
            "554 5.7.1 <refused@example.org>: Sender address rejected: not from you"]
        assert (await session(srv, "MAIL FROM:<later@example.org>", rcpt))[1] == (
            "450 4.7.1 <later@example.org>: Sender address rejected: come back")
        dropped = await session(srv, "MAIL FROM:<dropped@example.org>", rcpt, body=True)
        assert dropped[-1].startswith("250 2.0.0 Ok: queued as")
        for sender in ("redir", "marked", "filtered", "watched"):
            replies = await session(srv, f"MAIL FROM:<{sender}@example.org>", rcpt, body=True)
            assert replies[-1].startswith("250 2.0.0 Ok: queued as"), sender
        messages = {m.sender: m for m in await srv.messages()}
        assert "dropped@example.org" not in messages  # 250, but nothing queued
        assert messages["held@example.org"].state == "hold"
        assert [r.address for r in messages["redir@example.org"].recipients] == [
            "trap@example.test"]
        assert messages["filtered@example.org"].attrs["content_filter"] == (
            "scan:[127.0.0.1]:10025")
        content = await srv.content(messages["marked@example.org"].queue_id)
        assert content.startswith(b"X-Access-Note: seen by smtpd\nReceived: from ")
        log = srv.log
        assert ("NOQUEUE: warn: RCPT from unknown[127.0.0.2]: watch this one; "
                "from=<watched@example.org> to=<b@example.test>") in log
        assert ("hold: RCPT from unknown[127.0.0.2]: <held@example.org>: Sender address "
                "triggers HOLD action") in log
        assert "discard: RCPT from unknown[127.0.0.2]: <dropped@example.org>" in log
        assert ("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 "
                "<refused@example.org>: Sender address rejected: not from you") in log


async def test_client_helo_and_data_restrictions(tmp_path: Path) -> None:
    settings = {
        "smtpd_helo_required": "yes",
        "smtpd_helo_restrictions": "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
        "smtpd_data_restrictions": "reject_unauth_pipelining",
        "smtpd_recipient_restrictions": "reject_non_fqdn_recipient",
    }
    async with running_server(tmp_path, settings) as srv:
        payload = (b"MAIL FROM:<a@example.org>\r\nHELO pc17\r\nMAIL FROM:<a@example.org>\r\n"
                   b"RCPT TO:<b@example.test>\r\nHELO pc17.example.org\r\n"
                   b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b>\r\n"
                   b"RCPT TO:<b@example.test>\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload, local_addr=OUTSIDE))
        assert lines[1] == "503 5.5.1 Error: send HELO/EHLO first"
        assert lines[4] == ("504 5.5.2 <pc17>: Helo command rejected: need fully-qualified "
                            "hostname")
        assert lines[7] == ("504 5.5.2 <b>: Recipient address rejected: need "
                            "fully-qualified address")
        assert lines[8] == "250 2.1.5 Ok"
        # DATA sent together with the message, before our 354: improper pipelining.
        payload = (b"EHLO c.example.org\r\nMAIL FROM:<a@example.org>\r\n"
                   b"RCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload, local_addr=OUTSIDE))
        assert ("503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command "
                "pipelining") in lines


async def test_rbl_and_unknown_domains_with_the_test_dns(tmp_path: Path) -> None:
    records = {
        "2.0.0.127.rbl.test": {"A": ["127.0.0.2"], "TXT": ['"see https://rbl.test/2"']},
        "bad.example.org.rhs.test": {"A": ["127.0.0.2"]},
        "good.example.org": {"MX": ["10 mx.good.example.org"]},
    }
    async with DnsServer(records, servfail=["flaky.example.org"]) as dns:
        settings = {"dns_nameservers": dns.nameserver,
                    "smtpd_client_restrictions": "reject_rbl_client rbl.test",
                    "smtpd_sender_restrictions": "reject_rhsbl_sender rhs.test, "
                                                 "reject_unknown_sender_domain"}
        async with running_server(tmp_path, settings) as srv:
            rcpt = "RCPT TO:<b@example.test>"
            assert (await session(srv, "MAIL FROM:<a@good.example.org>", rcpt))[1] == (
                "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using "
                "rbl.test; see https://rbl.test/2")
        settings["smtpd_client_restrictions"] = ""
        async with running_server(tmp_path / "2", settings) as srv:
            lines = [(await session(srv, f"MAIL FROM:<a@{d}>", rcpt))[1]
                     for d in ("bad.example.org", "nx.example.org", "flaky.example.org",
                               "good.example.org")]
            assert lines == [
                "554 5.7.1 Service unavailable; Sender address [a@bad.example.org] blocked "
                "using rhs.test",
                "450 4.1.8 <a@nx.example.org>: Sender address rejected: Domain not found",
                "450 4.1.8 <a@flaky.example.org>: Sender address rejected: Domain not found",
                "250 2.1.5 Ok"]


async def test_unknown_local_user_is_refused_at_rcpt(tmp_path: Path) -> None:
    users = write(tmp_path, "users", "alice x\n")
    moved = write(tmp_path, "relocated", "dave@example.test dave@elsewhere.example\n")
    async with running_server(tmp_path, {"local_recipient_maps": users,
                                         "relocated_maps": moved}) as srv:
        lines = await session(srv, "MAIL FROM:<a@example.org>", "RCPT TO:<zed@example.test>",
                              "RCPT TO:<dave@example.test>", "RCPT TO:<alice@example.test>",
                              body=True)
        assert lines[1] == ("550 5.1.1 <zed@example.test>: Recipient address rejected: "
                            "User unknown in local recipient table")
        assert lines[2] == ("550 5.1.6 <dave@example.test>: Recipient address rejected: "
                            "User has moved to dave@elsewhere.example")
        assert lines[3] == "250 2.1.5 Ok"
        [message] = await srv.messages()  # only the known user; nothing bounces later
        assert [r.address for r in message.recipients] == ["alice@example.test"]


async def test_access_table_change_applies_to_the_next_session(tmp_path: Path) -> None:
    access = write(tmp_path, "clients", "127.0.0.2 REJECT first version\n")
    settings = {"smtpd_client_restrictions": f"check_client_access {access}"}
    async with running_server(tmp_path, settings) as srv:
        rcpt = "RCPT TO:<b@example.test>"
        assert (await session(srv, "MAIL FROM:<a@example.org>", rcpt))[1] == (
            "554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: first version")
        (tmp_path / "clients").write_text("127.0.0 REJECT second version\n")
        assert (await session(srv, "MAIL FROM:<a@example.org>", rcpt))[1] == (
            "554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: second version")
        (tmp_path / "clients").write_text("# nobody\n")
        assert (await session(srv, "MAIL FROM:<a@example.org>", rcpt))[1] == "250 2.1.5 Ok"


async def test_hold_from_end_of_data_restrictions(tmp_path: Path) -> None:
    # HOLD decided only at end of data must still reach the queued message (Postfix's
    # smtpd_end_of_data_restrictions = check_client_access static:HOLD idiom).
    settings = {"smtpd_end_of_data_restrictions": "check_client_access static:HOLD"}
    async with running_server(tmp_path, settings) as srv:
        replies = await session(srv, "MAIL FROM:<a@client.example.org>",
                                "RCPT TO:<u@example.test>", body=True)
        assert replies[-1].startswith("250 2.0.0 Ok: queued as ")
        [message] = await srv.messages()
        assert message.state == "hold"


async def test_listener_overrides_give_it_its_own_restrictions(tmp_path: Path) -> None:
    # A master.cf service with -o smtpd_*_restrictions, as a Postfix submission service has:
    # main.cf relays only for mynetworks; the second listener relays for nobody at all.
    from support.smtpd import free_port

    port = free_port()
    settings = {"smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}
    second = (f"127.0.0.1:{port} inet n - n - - smtpd\n"
              "  -o smtpd_relay_restrictions=reject_unauth_destination\n")
    async with running_server(tmp_path, settings, services=second) as srv:
        inside = await raw_session(srv.host, srv.port, b"EHLO c.test\r\nMAIL FROM:<a@c.test>"
                                   b"\r\nRCPT TO:<x@far.example>\r\nQUIT\r\n")
        assert "250 2.1.5 Ok" in reply_lines(inside)
        strict = await raw_session("127.0.0.1", port, b"EHLO c.test\r\nMAIL FROM:<a@c.test>"
                                   b"\r\nRCPT TO:<x@far.example>\r\nQUIT\r\n")
        assert any(line.startswith("554 5.7.1 <x@far.example>: Relay access denied")
                   for line in reply_lines(strict))
