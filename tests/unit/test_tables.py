"""Lookup table types: fixed-key tables, indexed format, composites, errors and reloading."""

from __future__ import annotations

import os
import pwd
import sqlite3
from pathlib import Path

import pytest

from mailcore.errors import TableError
from mailcore.tables import SUPPORTED_TYPES, TableSet, split_table_spec, split_values
from mailcore.tables.base import logical_lines
from mailcore.tables.indexed import build_index, index_path, parse_map_source

TRANSPORT = """\
# transport(5) example
csie.nctu.edu.tw    smtp:[mailgate.csie.nctu.edu.tw]
example.com         smtp:[192.168.23.56]:20025
orillynet.com       smtp
ora.com             maildrop
kdent@ora.com       error:no mail accepted for kdent
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def build(tmp_path: Path, name: str, text: str, kind: str = "hash") -> Path:
    src = write(tmp_path / name, text)
    entries = parse_map_source(text, str(src))
    build_index(kind, index_path(kind, src), entries.items())
    return src


def bump(path: Path, text: str) -> None:
    """Rewrite a file so that its stamp surely changes (size or mtime)."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_split_table_spec_and_values() -> None:
    assert split_table_spec("hash:/etc/x") == ("hash", "/etc/x")
    assert split_table_spec("proxy:hash:/etc/x") == ("proxy", "hash:/etc/x")
    with pytest.raises(TableError, match="type:name"):
        split_table_spec("/etc/postfix/transport")
    assert split_values("a, b c,,d") == ["a", "b", "c", "d"]
    assert {"hash", "regexp", "pcre", "cidr", "sqlite"} <= set(SUPPORTED_TYPES)


def test_logical_lines_continuation_and_comments() -> None:
    text = "a 1\n# comment\n  more\n\nb 2\n"
    assert logical_lines(text) == [(1, "a 1 more"), (5, "b 2")]


async def test_transport_hash(tmp_path: Path) -> None:
    src = build(tmp_path, "transport", TRANSPORT)
    assert (tmp_path / "transport.db").exists()
    t = TableSet().open(f"hash:{src}")
    assert await t.get("csie.nctu.edu.tw") == "smtp:[mailgate.csie.nctu.edu.tw]"
    assert await t.get("EXAMPLE.com") == "smtp:[192.168.23.56]:20025"
    assert await t.get("kdent@ora.com") == "error:no mail accepted for kdent"
    assert await t.get("ora.com") == "maildrop"
    assert await t.get("nope.com") is None
    assert t.is_pattern is False


@pytest.mark.parametrize(("kind", "suffix"), [("btree", ".db"), ("lmdb", ".lmdb"), ("cdb", ".cdb")])
async def test_index_suffixes(tmp_path: Path, kind: str, suffix: str) -> None:
    src = build(tmp_path, "t", "k v\n", kind)
    assert (tmp_path / f"t{suffix}").exists()
    assert await TableSet().open(f"{kind}:{src}").get("k") == "v"


def test_duplicates_warn_first_wins(tmp_path: Path) -> None:
    warnings: list[str] = []
    got = parse_map_source("a 1\nA 2\nnovalue\n", "f", warn=warnings.append)
    assert got == {"a": "1"}
    assert warnings == ['f, line 2: duplicate entry: "a"',
                        "f, line 3: expected format: key whitespace value"]
    assert parse_map_source("a 1\na 2\n", "f", replace=True, warn=lambda m: None) == {"a": "2"}
    assert parse_map_source("Ab 1\n", "f", fold=False) == {"Ab": "1"}


async def test_texthash_and_reload(tmp_path: Path) -> None:
    src = write(tmp_path / "relocated", "andy@nasa.cs.nctu.edu.tw andyliu@abc.com\n")
    t = TableSet().open(f"texthash:{src}")
    assert await t.get("andy@nasa.cs.nctu.edu.tw") == "andyliu@abc.com"
    bump(src, "andy@nasa.cs.nctu.edu.tw elsewhere@abc.com\n")
    assert await t.get("andy@nasa.cs.nctu.edu.tw") == "elsewhere@abc.com"


async def test_hash_reload_after_rebuild(tmp_path: Path) -> None:
    src = build(tmp_path, "m", "k one\n")
    t = TableSet().open(f"hash:{src}")
    assert await t.get("k") == "one"
    build(tmp_path, "m", "k two\n")
    assert await t.get("k") == "two"


async def test_missing_and_corrupt_index(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"open database .*nothere\.db"):
        TableSet().open(f"hash:{tmp_path}/nothere")
    write(tmp_path / "bad.db", "not sqlite at all, just text" * 100)
    with pytest.raises(TableError, match="not a mailcore table index"):
        TableSet().open(f"hash:{tmp_path}/bad")


async def test_static_inline_environ_fail() -> None:
    ts = TableSet(environ={"HOME": "/home/x"})
    assert await ts.open("static:1003").get("anything") == "1003"
    assert await ts.open("static:{ text with spaces }").get("k") == "text with spaces"
    inline = ts.open("inline:{ Key=value, { other = text with spaces } }")
    assert await inline.get("key") == "value"
    assert await inline.get("OTHER") == "text with spaces"
    assert await inline.get("missing") is None
    assert await ts.open("environ:").get("HOME") == "/home/x"
    assert await ts.open("environ:").get("NOPE") is None
    with pytest.raises(TableError, match="fail"):
        await ts.open("fail:x").get("k")


async def test_unix_passwd() -> None:
    me = pwd.getpwuid(os.getuid())
    got = await TableSet().open("unix:passwd.byname").get(me.pw_name)
    assert got is not None
    fields = got.split(":")
    assert fields[0] == me.pw_name and fields[2] == str(me.pw_uid) and fields[5] == me.pw_dir
    assert await TableSet().open("unix:passwd.byname").get("no-such-user-xyz") is None


async def test_unionmap_pipemap_proxy() -> None:
    ts = TableSet()
    union = ts.open("unionmap:{inline:{a=1}, static:2, inline:{b=3}}")
    assert await union.get("a") == "1,2"
    pipe = ts.open("pipemap:{inline:{a=b}, inline:{b=c}}")
    assert await pipe.get("a") == "c"
    assert await pipe.get("x") is None
    proxy = ts.open("proxy:inline:{a=1}")
    assert await proxy.get("a") == "1" and proxy.spec == "proxy:inline:{a=1}"


def test_tableset_caches_per_spec() -> None:
    ts = TableSet()
    assert ts.open("static:x") is ts.open("static:x")
    assert TableSet().open("static:x") is not ts.open("static:x")


@pytest.mark.parametrize("kind", ["nis", "ldap", "mysql", "pgsql", "memcache", "socketmap", "tcp"])
def test_unsupported_types(kind: str) -> None:
    with pytest.raises(TableError, match=f"unsupported dictionary type: {kind}"):
        TableSet().open(f"{kind}:whatever")


def test_base_dir_for_relative_names(tmp_path: Path) -> None:
    write(tmp_path / "rel", "k v\n")
    assert TableSet(base_dir=tmp_path).open("texthash:rel") is not None


async def test_sqlite_table(tmp_path: Path) -> None:
    db = tmp_path / "mail.sqlite"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE virt (address TEXT, goto TEXT, domain TEXT)")
        conn.executemany("INSERT INTO virt VALUES (?, ?, ?)", [
            ("john@example.com", "john@real.org", "example.com"),
            ("list@example.com", "a@x.org", "example.com"),
            ("list@example.com", "b@x.org", "example.com"),
            ("o'neil@example.com", "quoted@x.org", "example.com"),
        ])
    conn.close()
    cf = write(tmp_path / "virt.cf", f"""\
dbpath = {db}
query = SELECT goto FROM virt
    WHERE address = '%s'
result_format = <%s>
domain = example.com
expansion_limit = 5
""")
    t = TableSet().open(f"sqlite:{cf}")
    assert await t.get("John@Example.com") == "<john@real.org>"
    assert await t.get("list@example.com") == "<a@x.org>,<b@x.org>"
    assert await t.get("o'neil@example.com") == "<quoted@x.org>"
    assert await t.get("john@other.com") is None  # outside "domain": no query
    assert await t.get("john") is None
    cf2 = write(tmp_path / "dom.cf", f"dbpath = {db}\nquery = SELECT DISTINCT domain FROM virt"
                " WHERE domain = '%d' AND '%u' != '' AND '%2' = 'example'\n"
                "expansion_limit = 1\n")
    t2 = TableSet().open(f"sqlite:{cf2}")
    assert await t2.get("x@example.com") == "example.com"
    assert await t2.get("example.com") is None  # %d without a domain suppresses the query
    cf3 = write(tmp_path / "lim.cf", f"dbpath = {db}\nquery = SELECT goto FROM virt\n"
                "expansion_limit = 2\n")
    with pytest.raises(TableError, match="expansion limit"):
        await TableSet().open(f"sqlite:{cf3}").get("k")


def test_sqlite_cf_errors(tmp_path: Path) -> None:
    cf = write(tmp_path / "bad.cf", "dbpath = /x\nbogus = 1\n")
    with pytest.raises(TableError) as err:
        TableSet().open(f"sqlite:{cf}")
    assert str(err.value) == f'{cf}, line 2: unknown sqlite parameter "bogus"'
    cf2 = write(tmp_path / "nodb.cf", "query = select 1\n")
    with pytest.raises(TableError, match="dbpath"):
        TableSet().open(f"sqlite:{cf2}")


def test_stale_index_warns(tmp_path: Path) -> None:
    src = build(tmp_path, "s", "k v\n")
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    warnings: list[str] = []
    TableSet(warn=warnings.append).open(f"hash:{src}")
    assert warnings == [f"database {src}.db is older than source file {src}"]
