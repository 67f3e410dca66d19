"""Every address-rewriting example of the seed lecture (../shared/seed/postfix-lecture-slides.txt),
checked against the behaviour Postfix documents for it. Each test names its slide.

The slides are OCR text; where a table line is garbled, the test uses the closest sensible
reading and says so.
"""

from __future__ import annotations

from pathlib import Path

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.config import from_mapping
from mailcore.model import EnvelopeRecipient as R
from mailcore.rewrite import Rewriter
from mailcore.tables import TableSet

SITE = {
    "myhostname": "csmailgate.cs.nctu.edu.tw",
    "mydomain": "cs.nctu.edu.tw",
    "myorigin": "$mydomain",  # slide "mydomain/myorigin": myorigin = $mydomain
    "mydestination": "$myhostname, $mydomain",
    "inet_interfaces": "127.0.0.1",
}


def make(tmp_path: Path, files: dict[str, str] | None = None, **settings: str) -> Rewriter:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    config = from_mapping({**SITE, **settings}, config_dir=tmp_path)
    tables = TableSet(base_dir=tmp_path)
    return Rewriter(config, tables, DomainClassifier(config, tables))


async def test_rewriting_address_1_append_at_myorigin_and_dot_mydomain(tmp_path: Path) -> None:
    """Slide "Rewriting address (1)": append_at_myorigin, append_dot_mydomain = yes."""
    rw = make(tmp_path, append_dot_mydomain="yes")
    assert await rw.rewrite_sender("chwong") == "chwong@cs.nctu.edu.tw"
    assert await rw.rewrite_sender("chwong@chbsd") == "chwong@chbsd.cs.nctu.edu.tw"


async def test_rewriting_address_1_masquerading(tmp_path: Path) -> None:
    """Slide "Rewriting address (1)": masquerade_domains = !chairman.cs.nctu.edu.tw
    cs.nctu.edu.tw ("Ichairman" is OCR for "!chairman"), masquerade_exceptions = admin, root,
    masquerade_classes = envelope_sender, header_sender, header_recipient — every address
    except the envelope recipient."""
    rw = make(tmp_path, masquerade_domains="!chairman.cs.nctu.edu.tw cs.nctu.edu.tw",
              masquerade_exceptions="admin, root",
              masquerade_classes="envelope_sender, header_sender, header_recipient")
    assert await rw.rewrite_sender("chwong@chbsd.cs.nctu.edu.tw") == "chwong@cs.nctu.edu.tw"
    assert await rw.rewrite_sender("chwong@chairman.cs.nctu.edu.tw") == (
        "chwong@chairman.cs.nctu.edu.tw")
    assert await rw.rewrite_sender("chwong@pc.chairman.cs.nctu.edu.tw") == (
        "chwong@pc.chairman.cs.nctu.edu.tw")
    assert await rw.rewrite_sender("root@chbsd.cs.nctu.edu.tw") == "root@chbsd.cs.nctu.edu.tw"
    assert await rw.rewrite_sender("admin@chbsd.cs.nctu.edu.tw") == "admin@chbsd.cs.nctu.edu.tw"
    assert await rw.rewrite_recipient("chwong@chbsd.cs.nctu.edu.tw") == (
        "chwong@chbsd.cs.nctu.edu.tw")
    assert await rw.rewrite_header("From", "Chwong <chwong@chbsd.cs.nctu.edu.tw>",
                                   context="local") == "Chwong <chwong@cs.nctu.edu.tw>"
    assert await rw.rewrite_header("Cc", "x@linux1.cs.nctu.edu.tw, root@linux1.cs.nctu.edu.tw",
                                   context="local") == (
        "x@cs.nctu.edu.tw, root@linux1.cs.nctu.edu.tw")


CANONICAL = r"/^(.+)@(t)?(cs)?(bsd|linux|sun)\d*\.cs\.nctu\.edu\.tw$/ $1@cs.nctu.edu.tw" "\n"


async def test_rewriting_address_2_canonical_regexp(tmp_path: Path) -> None:
    """Slide "Rewriting address (2)": canonical with the regular-expression line
    ``INF)@(t)?(cs)?(bsd|linux|sun)\\d*\\.cs\\.nctu\\.edu\\.tw$/ $1@cs.nctu.edu.tw``. The
    garbled start is read as ``/^(.+)`` (the user, which $1 returns); ``\\d`` makes it a PCRE
    table. canonical_classes lists all four classes, so envelope and headers both change."""
    rw = make(tmp_path, {"canonical": CANONICAL}, canonical_maps="pcre:canonical",
              canonical_classes="envelope_sender, envelope_recipient, header_sender, "
                                "header_recipient")
    assert await rw.rewrite_sender("chwong@tcsbsd3.cs.nctu.edu.tw") == "chwong@cs.nctu.edu.tw"
    assert await rw.rewrite_recipient("liuyh@linux2.cs.nctu.edu.tw") == "liuyh@cs.nctu.edu.tw"
    assert await rw.rewrite_recipient("liuyh@sun.cs.nctu.edu.tw") == "liuyh@cs.nctu.edu.tw"
    assert await rw.rewrite_recipient("liuyh@csmail.cs.nctu.edu.tw") == (
        "liuyh@csmail.cs.nctu.edu.tw")
    assert await rw.rewrite_header("To", "Liu <liuyh@bsd1.cs.nctu.edu.tw>", context="local") == (
        "Liu <liuyh@cs.nctu.edu.tw>")


async def test_virtual_alias_maps_hash_example(tmp_path: Path) -> None:
    """Slide "Virtual Alias Maps": chwong@csie -> @chbsd.cs (keeps the user), chwong ->
    ch0nsi@gmail.com for local domains, @csie.nctu.edu.tw -> @cs.nctu.edu.tw."""
    table = ("chwong@csie.nctu.edu.tw @chbsd.cs.nctu.edu.tw\n"
             "chwong ch0nsi@gmail.com\n@csie.nctu.edu.tw @cs.nctu.edu.tw\n")
    rw = make(tmp_path, {"virtual": table}, virtual_alias_maps="texthash:virtual")
    result = await rw.expand_recipients(
        [R("chwong@csie.nctu.edu.tw"), R("alice@csie.nctu.edu.tw")], sender="")
    # alice@csie -> alice@cs; chwong@csie -> chwong@chbsd.cs (not local, so no "chwong" key)
    assert [r.address for r in result.recipients] == ["chwong@chbsd.cs.nctu.edu.tw",
                                                      "alice@cs.nctu.edu.tw"]
    result = await rw.expand_recipients([R("chwong@cs.nctu.edu.tw")], sender="")
    assert [r.address for r in result.recipients] == ["ch0nsi@gmail.com"]


VIRTUAL_PCRE = (
    r"/^root(\..+)?@(t)?(cs|np)?bsd\d*\.cs\.nctu\.edu\.tw$/ bsdta@cs.nctu.edu.tw" "\n"
    r"/^root(\..+)?@(t)?(cs|np)?linux\d*\.cs\.nctu\.edu\.tw$/ linuxta@cs.nctu.edu.tw" "\n"
    r"/^root(\..+)?@(t)?csmail\w*\d*\.cs\.nctu\.edu\.tw$/ mailta@cs.nctu.edu.tw" "\n"
)


async def test_virtual_alias_maps_pcre_example(tmp_path: Path) -> None:
    """Slide "Virtual Alias Maps", pcre:/usr/local/etc/postfix/virtual; the OCR'd ``I"`` and
    ``/"`` at the start of each line read as ``/^``."""
    rw = make(tmp_path, {"virtual": VIRTUAL_PCRE}, virtual_alias_maps="pcre:virtual")
    cases = {
        "root@tcsbsd2.cs.nctu.edu.tw": "bsdta@cs.nctu.edu.tw",
        "root.cron@npbsd.cs.nctu.edu.tw": "bsdta@cs.nctu.edu.tw",
        "root@linux5.cs.nctu.edu.tw": "linuxta@cs.nctu.edu.tw",
        "root@csmailgate.cs.nctu.edu.tw": "mailta@cs.nctu.edu.tw",
        "chwong@bsd1.cs.nctu.edu.tw": "chwong@bsd1.cs.nctu.edu.tw",
    }
    for given, expected in cases.items():
        result = await rw.expand_recipients([R(given)], sender="")
        assert [r.address for r in result.recipients] == [expected], given
        assert result.recipients[0].orig_rcpt == given


async def test_rewriting_address_3_relocated(tmp_path: Path) -> None:
    """Slide "Rewriting address (3)": relocated_maps; smtpd answers 550 5.1.6 with the text."""
    table = ("andy@nasa.cs.nctu.edu.tw  andyliu@abc.com\nliuyh EC319, NCTU, ROC\n"
             "@nabsd.cs.nctu.edu.tw zfs.cs.nctu.edu.tw\n")
    rw = make(tmp_path, {"relocated": table}, relocated_maps="texthash:relocated")
    assert await rw.relocated("andy@nasa.cs.nctu.edu.tw") == "andyliu@abc.com"
    assert await rw.relocated("liuyh@cs.nctu.edu.tw") == "EC319, NCTU, ROC"
    assert await rw.relocated("liuyh@elsewhere.org") is None  # bare user: local domains only
    assert await rw.relocated("anyone@nabsd.cs.nctu.edu.tw") == "zfs.cs.nctu.edu.tw"


async def test_shared_domain_with_system_accounts(tmp_path: Path) -> None:
    """Slide "Multiple Domains - Shared Domain with System Account": mydestination =
    $myhostname, $mydomain, csie.nctu.edu.tw; both domains reach the same mailbox."""
    rw = make(tmp_path, mydestination="$myhostname, $mydomain, csie.nctu.edu.tw")
    for address in ("chwong@cs.nctu.edu.tw", "chwong@csie.nctu.edu.tw"):
        rewritten = await rw.rewrite_recipient(address)
        result = await rw.expand_recipients([R(rewritten, address)], sender="")
        assert [r.address for r in result.recipients] == [address]
        assert await rw.classifier.classify(address.split("@")[1]) is AddressClass.LOCAL


async def test_separate_domains_with_system_accounts(tmp_path: Path) -> None:
    """Slide "Separate Domains with System Accounts": virtual_alias_domains = abc.com.tw,
    xyz.com.tw; virtual: CEO@abc.com.tw andy, @xyz.com.tw jack. "andy" and "jack" are local
    UNIX accounts: the bare names get @$myorigin. Other abc.com.tw users are unknown."""
    rw = make(tmp_path, {"virtual": "CEO@abc.com.tw andy\n@xyz.com.tw jack\n"},
              virtual_alias_domains="abc.com.tw, xyz.com.tw",
              virtual_alias_maps="texthash:virtual")
    result = await rw.expand_recipients(
        [R("ceo@abc.com.tw"), R("anyone@xyz.com.tw"), R("cfo@abc.com.tw")], sender="")
    assert [(r.address, r.orig_rcpt) for r in result.recipients] == [
        ("andy@cs.nctu.edu.tw", "ceo@abc.com.tw"), ("jack@cs.nctu.edu.tw", "anyone@xyz.com.tw")]
    assert [(f.recipient.address, f.status, f.text) for f in result.failures] == [
        ("cfo@abc.com.tw", "5.1.1", "User unknown in virtual alias table")]


async def test_separate_domains_with_virtual_accounts(tmp_path: Path) -> None:
    """Slide "Separate Domains with Virtual Accounts": virtual_mailbox_domains = abc.com.tw,
    xyz.com.tw ("Xyz" in the slide; domains compare case-insensitively). Rewriting leaves
    these recipients as they are: the virtual delivery agent finds their mailboxes."""
    rw = make(tmp_path, virtual_mailbox_domains="abc.com.tw, Xyz.com.tw")
    for address in ("CEO@abc.com.tw", "CEO@xyz.com.tw"):
        rewritten = await rw.rewrite_recipient(address)
        result = await rw.expand_recipients([R(rewritten, address)], sender="")
        assert [r.address for r in result.recipients] == [address]
        assert result.failures == ()
        domain = address.split("@")[1]
        assert await rw.classifier.classify(domain) is AddressClass.VIRTUAL_MAILBOX
