"""regexp, pcre and cidr tables: syntax, flags, $N substitution, if/endif, errors, reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailcore.errors import TableError
from mailcore.tables import TableSet
from mailcore.tables.regexp import expand_result, posix_to_python


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bump(path: Path, text: str) -> None:
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


PCRE_VIRTUAL = r"""
/^root(\..+)?@(t)?(cs|np)?bsd\d*\.cs\.nctu\.edu\.tw$/      bsdta@cs.nctu.edu.tw
/^root(\..+)?@(t)?(cs|np)?linux\d*\.cs\.nctu\.edu\.tw$/    linuxta@cs.nctu.edu.tw
/^root(\..+)?@csmail\d*\.cs\.nctu\.edu\.tw$/               csmailta@cs.nctu.edu.tw
"""


async def test_pcre_virtual_seed(tmp_path: Path) -> None:
    t = TableSet().open(f"pcre:{write(tmp_path / 'virtual.pcre', PCRE_VIRTUAL)}")
    assert t.is_pattern
    assert await t.get("root@bsd1.cs.nctu.edu.tw") == "bsdta@cs.nctu.edu.tw"
    assert await t.get("root.cron@tcsbsd12.cs.nctu.edu.tw") == "bsdta@cs.nctu.edu.tw"
    assert await t.get("ROOT@npbsd.CS.nctu.edu.tw") == "bsdta@cs.nctu.edu.tw"
    assert await t.get("root@linux3.cs.nctu.edu.tw") == "linuxta@cs.nctu.edu.tw"
    assert await t.get("root@csmail2.cs.nctu.edu.tw") == "csmailta@cs.nctu.edu.tw"
    assert await t.get("root@xbsd1.cs.nctu.edu.tw") is None
    assert await t.get("rooty@bsd1.cs.nctu.edu.tw") is None


async def test_regexp_canonical_dollar_substitution(tmp_path: Path) -> None:
    src = write(tmp_path / "canonical", r"""
/^(\S+)\.(\S+)@nasa\.cs\.nctu\.edu\.tw$/   $1@nasa.cs.nctu.edu.tw
/^([[:alpha:]]+)-([[:digit:]]+)@x\.org$/   ${2}.$1@x.org costs $$5
""")
    t = TableSet().open(f"regexp:{src}")
    assert await t.get("andy.liu@nasa.cs.nctu.edu.tw") == "andy@nasa.cs.nctu.edu.tw"
    assert await t.get("Bob-42@X.ORG") == "42.Bob@x.org costs $5"
    assert await t.get("bob-4x2@x.org") is None
    assert await t.get("plain@nasa.cs.nctu.edu.tw") is None


async def test_regexp_negation_and_if_endif(tmp_path: Path) -> None:
    src = write(tmp_path / "checks", """
/^admin@/!/example\\.com$/   REJECT not admin here
if /@example\\.com$/
if !/^postmaster@/
/^(.*)@/   OK user $1
endif
/./  DUNNO inside
endif
!/@/   REJECT no domain
""")
    t = TableSet().open(f"regexp:{src}")
    assert await t.get("admin@other.org") == "REJECT not admin here"
    assert await t.get("admin@example.com") == "OK user admin"
    assert await t.get("bob@example.com") == "OK user bob"
    assert await t.get("postmaster@example.com") == "DUNNO inside"
    assert await t.get("local") == "REJECT no domain"
    assert await t.get("someone@else.org") is None


async def test_regexp_flags(tmp_path: Path) -> None:
    src = write(tmp_path / "flags", """
/^CaseOnly$/i     exact-case
/^a+b$/x          basic-re
/^x\\(y\\)z$/x    $1-group
/^first$/m        multiline
""")
    t = TableSet().open(f"regexp:{src}")
    assert await t.get("CaseOnly") == "exact-case"
    assert await t.get("caseonly") is None
    assert await t.get("a+b") == "basic-re"  # BRE: + is literal
    assert await t.get("aab") is None
    assert await t.get("xyz") == "y-group"
    assert await t.get("zero\nfirst\nlast") == "multiline"


def test_posix_translation() -> None:
    assert posix_to_python("[[:alpha:]_]", extended=True, newline=False) == "[a-zA-Z\\_]"
    assert posix_to_python("[]a]", extended=True, newline=False) == "[\\]a]"
    assert posix_to_python("\\<w\\>", extended=True, newline=False) == r"\b(?=\w)w\b(?<=\w)"
    with pytest.raises(ValueError, match="character class"):
        posix_to_python("[[:bogus:]]", extended=True, newline=False)


def test_expand_result() -> None:
    import re

    m = re.match(r"(a)(b)?", "a")
    assert expand_result("$1-$2-${1}-$$", m) == "a--a-$"


async def test_pcre_flags(tmp_path: Path) -> None:
    src = write(tmp_path / "p", r"""
/b+/A                 anchored
/(?<name>x+)(y*)/U    lazy:$1:$2
/end$/E               dollar-end-only
/Foo/i                case-sensitive
""")
    t = TableSet().open(f"pcre:{src}")
    assert await t.get("bbc") == "anchored"
    assert await t.get("abb") != "anchored"
    assert await t.get("xxyy") == "lazy:x:"  # U makes + and * lazy
    assert await t.get("the end") == "dollar-end-only"
    assert await t.get("the end\n") is None
    assert await t.get("Foo") == "case-sensitive"
    assert await t.get("foo") is None


@pytest.mark.parametrize(
    ("kind", "text", "line", "message"),
    [
        ("regexp", "/ok/ fine\n/(a/ x\n", 2, "bad regular expression"),
        ("regexp", "/a/ ok\n/(b)/ $2\n", 2, "out of range replacement index"),
        ("regexp", "!/(b)/ $1\n", 1, "negative match"),
        ("regexp", "/a/q x\n", 1, 'unknown regexp option "q"'),
        ("regexp", "/a x\n", 1, "missing closing delimiter"),
        ("regexp", "if /a/\n/b/ c\n", 1, "IF has no matching ENDIF"),
        ("regexp", "/a/ b\nendif\n", 2, "ENDIF without matching IF"),
        ("pcre", "/a/ ok\n\n/(?<=a+)b/ x\n", 3, "bad regular expression"),
        ("pcre", "/a/ok/ x\n", 1, 'unknown regexp option "o"'),
        ("cidr", "10.0.0.0/8 OK\n10.0.0.300/8 bad\n", 2, "bad network address"),
        ("cidr", "if 10.0.0.0/8\n", 1, "IF has no matching ENDIF"),
    ],
)
def test_pattern_errors_name_file_and_line(
    tmp_path: Path, kind: str, text: str, line: int, message: str
) -> None:
    src = write(tmp_path / "t", text)
    with pytest.raises(TableError) as err:
        TableSet().open(f"{kind}:{src}")
    assert err.value.file == str(src) and err.value.line == line
    assert message in str(err.value) and str(err.value).startswith(f"{src}, line {line}: ")


async def test_regexp_reload_and_broken_reload(tmp_path: Path) -> None:
    src = write(tmp_path / "r", "/a/ one\n")
    t = TableSet().open(f"regexp:{src}")
    assert await t.get("a") == "one"
    bump(src, "/a/ two\n")
    assert await t.get("a") == "two"
    bump(src, "/a/ two\n/(/ broken\n")
    with pytest.raises(TableError, match="line 2"):
        await t.get("a")
    bump(src, "/a/ three\n")
    assert await t.get("a") == "three"


async def test_cidr(tmp_path: Path) -> None:
    warnings: list[str] = []
    src = write(tmp_path / "access.cidr", """
# client access
192.168.1.1           OK host
192.168.0.0/16        REJECT lan
10.0.0.5/8            host bits set
[2001:db8::]/32       OK v6
if 172.16.0.0/12
!172.16.1.0/24      DUNNO not the one
172.16.0.0/12       REJECT rest
endif
0.0.0.0/0             ALL v4
""")
    t = TableSet(warn=warnings.append).open(f"cidr:{src}")
    assert t.is_pattern
    assert await t.get("192.168.1.1") == "OK host"
    assert await t.get("192.168.7.7") == "REJECT lan"
    assert await t.get("2001:db8::1") == "OK v6"
    assert await t.get("[2001:db8:ff::9]") == "OK v6"
    assert await t.get("2001:db9::1") is None  # IPv4 0/0 never matches IPv6
    assert await t.get("172.16.5.1") == "DUNNO not the one"
    assert await t.get("172.16.1.9") == "REJECT rest"
    assert await t.get("10.0.0.5") == "ALL v4"  # the rule with host bits was skipped
    assert await t.get("not-an-address") is None
    assert len(warnings) == 1 and "line 5" in warnings[0] and "host address bits" in warnings[0]


async def test_cidr_reload(tmp_path: Path) -> None:
    src = write(tmp_path / "c", "10.0.0.0/8 A\n")
    t = TableSet().open(f"cidr:{src}")
    assert await t.get("10.1.1.1") == "A"
    bump(src, "10.0.0.0/8 B\n")
    assert await t.get("10.1.1.1") == "B"
