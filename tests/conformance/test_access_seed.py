"""The relay-control examples of ../shared/seed/postfix-lecture-slides.txt, as SMTP sessions
against a running mailcore: "mynetworks (override mynetworks_style)" with the networks in a
table file, the inbound mail gateway (relay_domains) and the outbound mail gateway
(mynetworks = a table of the lab hosts). Source: the slides "Relay Control (2)", "Inbound
Mail Gateway (2)" and "Outbound Mail Gateway"; semantics per Postfix's postconf(5)
mynetworks / relay_domains and SMTPD_ACCESS_README."""

from __future__ import annotations

from pathlib import Path

from support.client import raw_session, reply_lines
from support.smtpd import running_server

RELAY = "permit_mynetworks, reject_unauth_destination"


async def rcpt(host: str, port: int, recipient: str, client: str) -> str:
    payload = (f"EHLO c.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{recipient}>\r\n"
               "QUIT\r\n").encode()
    lines = reply_lines(await raw_session(host, port, payload, local_addr=(client, 0)))
    return lines[3]


async def test_mynetworks_in_a_table_file(tmp_path: Path) -> None:
    # Slide: "EX: in /usr/local/etc/postfix/mynetworks: 127.0.0.0/8 140.113.0.0/16
    # 10.113.0.0/16" — here a cidr table (loopback stands in for the campus networks).
    (tmp_path / "mynetworks").write_text("127.0.0.1/32 OK\n140.113.0.0/16 OK\n"
                                         "10.113.0.0/16 OK\n")
    settings = {"mynetworks": f"cidr:{tmp_path / 'mynetworks'}",
                "smtpd_relay_restrictions": RELAY}
    async with running_server(tmp_path, settings) as srv:
        assert await rcpt(srv.host, srv.port, "u@gmail.example", "127.0.0.1") == "250 2.1.5 Ok"
        assert await rcpt(srv.host, srv.port, "u@gmail.example", "127.0.0.3") == (
            "554 5.7.1 <u@gmail.example>: Relay access denied")


async def test_inbound_mail_gateway_relays_only_for_relay_domains(tmp_path: Path) -> None:
    # Slide: relay_domains = secureLab.cs.nctu.edu.tw javaLab.cs.nctu.edu.tw on csmx1.
    settings = {"myhostname": "csmx1.cs.nctu.edu.tw", "mydestination": "$myhostname",
                "relay_domains": "secureLab.cs.nctu.edu.tw javaLab.cs.nctu.edu.tw",
                "mynetworks": "127.0.0.1/32", "smtpd_relay_restrictions": RELAY}
    async with running_server(tmp_path, settings) as srv:
        outside = "127.0.0.2"
        for recipient in ("alice@secureLab.cs.nctu.edu.tw", "bob@javalab.cs.nctu.edu.tw",
                          "carol@pc1.securelab.cs.nctu.edu.tw"):
            assert await rcpt(srv.host, srv.port, recipient, outside) == "250 2.1.5 Ok"
        for recipient in ("dave@cs.nctu.edu.tw", "eve@gmail.example",
                          "eve%gmail.example@securelab.cs.nctu.edu.tw"):
            assert await rcpt(srv.host, srv.port, recipient, outside) == (
                f"554 5.7.1 <{recipient}>: Relay access denied")


async def test_outbound_mail_gateway_relays_for_the_lab_hosts(tmp_path: Path) -> None:
    # Slide: csmailer has mynetworks = hash:/usr/local/etc/postfix/mynetworks listing the
    # lab hosts; here a texthash table of their addresses (the labs are 127.0.0.5 and .6).
    (tmp_path / "mynetworks").write_text("127.0.0.5 OK\n127.0.0.6 OK\n")
    settings = {"myhostname": "csmailer.cs.nctu.edu.tw", "mydestination": "$myhostname",
                "mynetworks": f"texthash:{tmp_path / 'mynetworks'}",
                "smtpd_relay_restrictions": RELAY}
    async with running_server(tmp_path, settings) as srv:
        for lab in ("127.0.0.5", "127.0.0.6"):
            assert await rcpt(srv.host, srv.port, "friend@gmail.example", lab) == (
                "250 2.1.5 Ok")
        assert await rcpt(srv.host, srv.port, "friend@gmail.example", "127.0.0.7") == (
            "554 5.7.1 <friend@gmail.example>: Relay access denied")
