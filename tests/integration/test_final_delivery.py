"""Final delivery end to end: SMTP in, the queue manager, files on disk.

The seed's "Separate Domains with Virtual Accounts" slides (virtual_mailbox_domains,
virtual_mailbox_base, virtual_mailbox_maps with mbox and Maildir/ entries, virtual_uid_maps =
static:1003, virtual_gid_maps = static:105), and local delivery through an alias to a user's
Maildir. Ownership checks need root, as CI has."""

from __future__ import annotations

import asyncio
import mailbox
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from support.smtpd import running_server

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="mailbox ownership needs root (CI runs as root)")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other users can traverse: pytest's tmp_path is private to root, and the
    kernel checks every path component against the recipient's uid, as it should."""
    path = Path(tempfile.mkdtemp(prefix="mailcore-delivery-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


async def wait_until_empty(srv, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await srv.messages():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"queue not empty; log:\n{srv.log[-3000:]}")


async def send(srv, recipients: list[str], subject: str) -> None:  # type: ignore[no-untyped-def]
    await aiosmtplib.send(
        f"From: boss@client.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n",
        sender="boss@client.test", recipients=recipients, hostname=srv.host, port=srv.port,
        local_hostname="client.test")


@needs_root
async def test_seed_separate_domains_with_virtual_accounts(tmp_path, open_dir):
    base = open_dir / "vmail"
    for domain in ("abc-domain", "xyz-domain"):
        (base / domain).mkdir(parents=True)
        base.chmod(0o755)
        os.chown(base / domain, 1003, 105)  # the domain directories belong to the mail uid
    maps = tmp_path / "vmailbox"
    maps.write_text("CEO@abc.com.tw abc-domain/CEO\nCEO@xyz.com.tw xyz-domain/CEO/\n")
    settings = {
        "virtual_mailbox_domains": "abc.com.tw, xyz.com.tw",
        "virtual_mailbox_base": str(base),
        "virtual_mailbox_maps": f"texthash:{maps}",
        "virtual_uid_maps": "static:1003",
        "virtual_gid_maps": "static:105",
    }
    async with running_server(tmp_path, settings,
                              services="virtual unix - n n - - virtual\n") as srv:
        await send(srv, ["CEO@abc.com.tw", "CEO@xyz.com.tw"], "quarterly")
        await wait_until_empty(srv)
    mbox_path = base / "abc-domain" / "CEO"
    assert (mbox_path.stat().st_uid, mbox_path.stat().st_gid) == (1003, 105)
    box = mailbox.mbox(str(mbox_path), create=False)
    try:
        [message] = list(box)
    finally:
        box.close()
    assert message["Subject"] == "quarterly"
    maildir = mailbox.Maildir(str(base / "xyz-domain" / "CEO"), create=False)
    [key] = maildir.keys()
    assert maildir[key]["Subject"] == "quarterly"
    new_file = next((base / "xyz-domain" / "CEO" / "new").iterdir())
    assert (new_file.stat().st_uid, new_file.stat().st_gid) == (1003, 105)
    assert "status=sent (delivered to mailbox)" in srv.log
    assert "status=sent (delivered to maildir)" in srv.log


@needs_root
async def test_local_alias_to_a_users_maildir(tmp_path, open_dir):
    home = open_dir / "home" / "alice"
    home.mkdir(parents=True)
    home.parent.chmod(0o755)
    os.chown(home, 1004, 1004)
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice alice:x:1004:1004:Alice:{home}:/bin/sh\n")
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster alice\n")  # texthash takes postmap syntax
    settings = {
        "local_recipient_maps": f"texthash:{passwd}",
        "alias_maps": f"texthash:{aliases}",
        "home_mailbox": "Maildir/",
    }
    async with running_server(tmp_path, settings,
                              services="local unix - n n - - local\n") as srv:
        await send(srv, ["postmaster@mx.test"], "to the postmaster")
        await wait_until_empty(srv)
    maildir = mailbox.Maildir(str(home / "Maildir"), create=False)
    [key] = maildir.keys()
    delivered = maildir[key]
    assert delivered["Subject"] == "to the postmaster"
    # the address delivered to, as local(8) writes it
    assert delivered["Delivered-To"] == "postmaster@mx.test"
    new_file = next((home / "Maildir" / "new").iterdir())
    assert new_file.stat().st_uid == 1004
    # One line per final destination, as Postfix's local(8) logs an alias expansion.
    assert "to=<alice@mx.test>, orig_to=<postmaster@mx.test>, relay=local" in srv.log
    assert "status=sent (delivered to maildir)" in srv.log


def test_files_here_are_real(tmp_path: Path) -> None:
    # Guard: the ownership tests above must not silently skip in CI.
    if os.environ.get("CI"):
        assert os.geteuid() == 0, "CI must run as root for the ownership tests"
