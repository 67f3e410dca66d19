"""local(8): aliases, :include:, .forward, mailbox, commands, files and the safety rules."""

from __future__ import annotations

import mailbox
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from mailcore.config import from_mapping
from mailcore.delivery.local import LocalAgent
from mailcore.delivery.mailbox import MessageFile
from mailcore.model import DeliveryRequest, EnvelopeRecipient, RecipientRef
from mailcore.tables import TableSet

BODY = b"Subject: test\n\nhello\n"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory other uids can search (pytest's own is under a 0700 root-only dir):
    deliveries run with the recipient's or default_privs' rights."""
    path = Path(tempfile.mkdtemp(prefix="mailcore-local-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


class FakeResubmit:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str | None]] = []

    async def resubmit(self, *, sender: str, recipients: Sequence[EnvelopeRecipient],
                       delivered_to: str | None, message: MessageFile,
                       envid: str | None, ret: str | None) -> str:
        assert b"hello" in b"".join(message.lines())
        self.calls.append((sender, [r.address for r in recipients], delivered_to))
        return f"NEWQ{len(self.calls)}"


class Site:
    def __init__(self, root: Path, aliases: str, extra: dict[str, str] | None = None,
                 body: bytes = BODY) -> None:
        self.root = root
        self.spool = root / "spool"
        self.spool.mkdir(mode=0o1777)
        os.chmod(self.spool, 0o1777)
        self.home = root / "home" / "bob"
        self.home.mkdir(parents=True)
        os.chown(self.home, 1003, 1003)
        (root / "passwd").write_text(
            f"bob bob:x:1003:1003::{self.home}:/bin/sh\n"
            "nobody nobody:x:65534:65534::/nonexistent:/bin/false\n")
        (root / "aliases").write_text(aliases)
        settings = {
            "alias_maps": f"texthash:{root}/aliases",
            "local_recipient_maps": f"texthash:{root}/passwd $alias_maps",
            "mail_spool_directory": str(self.spool), "mydestination": "example.test",
            "myorigin": "example.test", "myhostname": "mx.example.test",
            "command_time_limit": "5s",
        } | (extra or {})
        self.resubmit = FakeResubmit()
        self.body = body

        async def content(queue_id: str) -> AsyncIterator[bytes]:
            yield self.body

        self.agent = LocalAgent(from_mapping(settings), TableSet(), content,
                                resubmitter=self.resubmit)

    async def send(self, *addresses: str, sender: str = "alice@remote.test"):  # type: ignore[no-untyped-def]
        refs = tuple(RecipientRef(i, a) for i, a in enumerate(addresses))
        request = DeliveryRequest("Q1", sender, refs, "local", "mx", 20, 0.0)
        result = await self.agent.deliver(request)
        return result.recipients if len(addresses) > 1 else result.recipients[0]


def messages(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(str(path))
    try:
        return list(box)
    finally:
        box.close()


async def test_user_mailbox_owned_by_recipient(tmp_path: Path) -> None:
    site = Site(tmp_path, "")
    r = await site.send("Bob@example.test")
    assert (r.status, r.dsn, r.reason, r.relay) == ("sent", "2.0.0", "delivered to mailbox",
                                                    "local")
    box = site.spool / "bob"
    assert box.stat().st_uid == 1003
    [msg] = messages(box)
    assert msg["Delivered-To"] == "bob@example.test"
    assert msg["Return-Path"] == "<alice@remote.test>"


async def test_unknown_user_bounces(tmp_path: Path) -> None:
    r = await Site(tmp_path, "").send("zed@example.test")
    assert (r.status, r.dsn, r.reason) == ("bounced", "5.1.1", 'unknown user: "zed"')


async def test_luser_relay(tmp_path: Path) -> None:
    site = Site(tmp_path, "", {"luser_relay": "catch+$user@remote.test"})
    r = await site.send("zed@example.test")
    assert r.status == "sent" and r.reason == "forwarded as NEWQ1"
    assert site.resubmit.calls[0][1] == ["catch+zed@remote.test"]


async def test_alias_include_and_owner(tmp_path: Path) -> None:
    inc = tmp_path / "list.inc"
    inc.write_text("# members\ndave@remote.test, erin@remote.test\n")
    site = Site(tmp_path, f"team bob, :include:{inc}\nowner-team bob\n")
    r = await site.send("team@example.test")
    assert (r.status, r.reason, r.action) == ("sent", "forwarded as NEWQ1", "relayed")
    # an alias with an owner- alias is resubmitted with the owner as the sender, local
    # members too (Postfix recipient.c), so each gets its own queue status
    assert site.resubmit.calls == [("owner-team@example.test",
                                    ["bob@example.test", "dave@remote.test",
                                     "erin@remote.test"], "team@example.test")]
    assert not (site.spool / "bob").exists()


async def test_alias_without_owner_delivers_local_members_directly(tmp_path: Path) -> None:
    inc = tmp_path / "list.inc"
    inc.write_text("dave@remote.test\n")
    site = Site(tmp_path, f"team bob, :include:{inc}\n")
    r = await site.send("team@example.test")
    assert r.status == "sent"
    assert messages(site.spool / "bob")[0]["Delivered-To"] == "team@example.test"
    assert site.resubmit.calls == [("alice@remote.test", ["dave@remote.test"],
                                    "team@example.test")]


async def test_alias_loop_bounces(tmp_path: Path) -> None:
    r = await Site(tmp_path, "a b\nb a\n").send("a@example.test")
    assert (r.status, r.dsn) == ("bounced", "5.4.6")


async def test_alias_to_itself_goes_to_mailbox(tmp_path: Path) -> None:
    site = Site(tmp_path, "bob bob, carol@remote.test\n")
    r = await site.send("bob@example.test")
    assert r.status == "sent"
    assert len(messages(site.spool / "bob")) == 1
    assert site.resubmit.calls[0][1] == ["carol@remote.test"]


async def test_delivered_to_loop(tmp_path: Path) -> None:
    site = Site(tmp_path, "", body=b"Delivered-To: bob@example.test\n" + BODY)
    r = await site.send("bob@example.test")
    assert (r.status, r.dsn, r.reason) == ("bounced", "5.4.6",
                                           "mail forwarding loop for bob@example.test")


async def test_dotforward_resubmits_and_keeps_copy(tmp_path: Path) -> None:
    site = Site(tmp_path, "")
    forward = site.home / ".forward"
    forward.write_text("carol@remote.test, \\bob\n")
    os.chown(forward, 1003, 1003)
    r = await site.send("bob@example.test")
    assert r.status == "sent"
    assert site.resubmit.calls == [("alice@remote.test", ["carol@remote.test"],
                                    "bob@example.test")]
    assert len(messages(site.spool / "bob")) == 1


async def test_dotforward_with_bad_owner_ignored(tmp_path: Path) -> None:
    site = Site(tmp_path, "")
    forward = site.home / ".forward"
    forward.write_text("carol@remote.test\n")
    os.chown(forward, 1004, 1004)
    r = await site.send("bob@example.test")
    assert r.reason == "delivered to mailbox" and not site.resubmit.calls


async def test_alias_to_file_runs_as_default_privs(tmp_path: Path) -> None:
    out = tmp_path / "files"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    site = Site(tmp_path, f"archive {out}/log\n")
    r = await site.send("archive@example.test")
    assert (r.status, r.reason) == ("sent", f"delivered to file: {out}/log")
    assert (out / "log").stat().st_uid == 65534
    assert messages(out / "log")[0]["Subject"] == "test"


@pytest.mark.parametrize(("code", "status", "dsn"), [
    (0, "sent", "2.0.0"), (75, "deferred", "4.3.0"), (67, "bounced", "5.1.1"),
    (1, "bounced", "5.3.0"),
])
async def test_alias_command_exit_status(tmp_path: Path, code: int, status: str,
                                         dsn: str) -> None:
    out = tmp_path / "cmd"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    site = Site(tmp_path, f'prog "|/bin/sh -c \'cat > {out}/in; id -u >> {out}/in; '
                          f'exit {code}\'"\n')
    r = await site.send("prog@example.test")
    assert (r.status, r.dsn) == (status, dsn)
    text = (out / "in").read_text()
    assert text.startswith("From alice@remote.test  ") and "hello" in text
    assert text.rstrip().endswith("65534")  # default_privs, not root
    if code == 0:
        assert r.reason.startswith("delivered to command: /bin/sh -c")


async def test_command_time_limit(tmp_path: Path) -> None:
    site = Site(tmp_path, 'slow "|/bin/sleep 30"\n', {"command_time_limit": "1s"})
    r = await site.send("slow@example.test")
    assert (r.status, r.dsn) == ("bounced", "5.3.0")
    assert r.reason == 'Command time limit exceeded: "/bin/sleep 30"'


async def test_command_in_include_file_is_restricted(tmp_path: Path) -> None:
    inc = tmp_path / "cmds.inc"
    inc.write_text(f"|/bin/touch {tmp_path}/pwned\n")
    r = await Site(tmp_path, f"list :include:{inc}\n").send("list@example.test")
    assert (r.status, r.dsn, r.reason) == ("bounced", "5.7.1", "mail to command is restricted")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("local", [
    '"../../etc/passwd"', '"a/b"', '"."', '".."', '"|sh -c id"', '":include:x"',
    '"/tmp/x"', '"|touch pwned"',
])
async def test_hostile_addresses_never_write_or_run(tmp_path: Path, local: str) -> None:
    site = Site(tmp_path, "")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = await site.send(f"{local.strip(chr(34))}@example.test")
    assert r.status == "bounced"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not site.resubmit.calls


async def test_mailbox_command(tmp_path: Path) -> None:
    out = tmp_path / "mc"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    site = Site(tmp_path, "", {"mailbox_command": f"/bin/sh -c 'echo $EXTENSION "
                                                   f"$USER > {out}/x'",
                               "recipient_delimiter": "+"})
    r = await site.send("bob+tag@example.test")
    assert r.status == "sent"
    assert (out / "x").read_text() == "tag bob\n"
    assert (out / "x").stat().st_uid == 1003


async def test_home_maildir(tmp_path: Path) -> None:
    site = Site(tmp_path, "", {"home_mailbox": "Maildir/"})
    r = await site.send("bob@example.test")
    assert r.reason == "delivered to maildir"
    box = mailbox.Maildir(str(site.home / "Maildir"), create=False)
    assert [m["Subject"] for m in box] == ["test"]
    assert (site.home / "Maildir" / "new").stat().st_uid == 1003
