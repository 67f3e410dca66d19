"""virtual(8): the seed's "separate domains with virtual accounts" and its safety rules."""

from __future__ import annotations

import mailbox
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailcore.config import from_mapping
from mailcore.delivery.virtual import VirtualAgent
from mailcore.model import DeliveryRequest, RecipientRef
from mailcore.tables import TableSet


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailcore-vmail-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def agent(base: Path, **extra: str) -> VirtualAgent:
    for domain, uid in (("abc-domain", 1003), ("xyz-domain", 1008)):
        (base / domain).mkdir()
        os.chown(base / domain, uid, 105)
    (base / "vmailbox").write_text("CEO@abc.com.tw abc-domain/CEO\n"
                                   "CEO@xyz.com.tw xyz-domain/CEO/\n"
                                   "@evil.test ../outside\n")
    (base / "uids").write_text("CEO@xyz.com.tw 1008\n")
    settings = {
        "virtual_mailbox_domains": "abc.com.tw, xyz.com.tw",
        "virtual_mailbox_base": str(base),
        "virtual_mailbox_maps": f"texthash:{base}/vmailbox",
        "virtual_uid_maps": f"texthash:{base}/uids static:1003",
        "virtual_gid_maps": "static:105",
        "myhostname": "mx.example.test",
    } | extra

    async def content(queue_id: str) -> AsyncIterator[bytes]:
        yield b"Subject: board\n\nFrom here on\n"

    return VirtualAgent(from_mapping(settings), TableSet(), content)


async def send(a: VirtualAgent, address: str):  # type: ignore[no-untyped-def]
    request = DeliveryRequest("Q1", "s@remote.test", (RecipientRef(1, address),), "virtual",
                              "abc.com.tw", 10, 0.0)
    return (await a.deliver(request)).recipients[0]


async def test_mbox_and_maildir_with_mapped_ids(base: Path) -> None:
    a = agent(base)
    r = await send(a, "ceo@abc.com.tw")
    assert (r.status, r.reason, r.relay) == ("sent", "delivered to mailbox", "virtual")
    st = (base / "abc-domain" / "CEO").stat()
    assert (st.st_uid, st.st_gid) == (1003, 105)
    box = mailbox.mbox(str(base / "abc-domain" / "CEO"))
    assert [m["Delivered-To"] for m in box] == ["ceo@abc.com.tw"]
    box.close()
    r = await send(a, "CEO@xyz.com.tw")
    assert r.reason == "delivered to maildir"
    new = base / "xyz-domain" / "CEO" / "new"
    [name] = os.listdir(new)
    st = (new / name).stat()
    assert (st.st_uid, st.st_gid) == (1008, 105)


async def test_unknown_bounces(base: Path) -> None:
    r = await send(agent(base), "cfo@abc.com.tw")
    assert (r.status, r.dsn, r.reason) == ("bounced", "5.1.1", 'unknown user: "cfo@abc.com.tw"')


async def test_minimum_uid_defers(base: Path) -> None:
    r = await send(agent(base, virtual_minimum_uid="2000"), "ceo@abc.com.tw")
    assert (r.status, r.dsn) == ("deferred", "4.3.5")
    assert not (base / "abc-domain" / "CEO").exists()


@pytest.mark.parametrize("address", ['"a/b"@abc.com.tw', '"../../etc/passwd"@abc.com.tw',
                                     '"."@abc.com.tw', '".."@abc.com.tw', "x@evil.test"])
async def test_hostile_never_leaves_base(base: Path, address: str) -> None:
    before = sorted(str(p) for p in base.parent.iterdir())
    r = await send(agent(base), address.replace('"', ""))
    assert r.status in ("bounced", "deferred")
    assert sorted(str(p) for p in base.parent.iterdir()) == before
    assert not (base.parent / "outside").exists()


async def test_symlinked_mailbox_refused(base: Path) -> None:
    a = agent(base)
    victim = base / "victim"
    victim.write_text("keep\n")
    (base / "abc-domain" / "CEO").symlink_to(victim)
    r = await send(a, "ceo@abc.com.tw")
    assert r.status == "bounced" and "symbolic link" in r.reason
    assert victim.read_text() == "keep\n"
