"""aliases(5) source parsing and alias value splitting."""

from __future__ import annotations

from mailcore.tables.aliases import parse_alias_source, parse_alias_values, split_alias_line


def test_split_alias_line() -> None:
    assert split_alias_line("root: a, b") == ("root", "a, b")
    assert split_alias_line('"a b": c') == ("a b", "c")
    assert split_alias_line('"a\\"q" : c') == ('a"q', "c")
    assert split_alias_line("no colon here") is None
    assert split_alias_line('"unterminated: x') is None


def test_parse_alias_source_continuation_duplicates() -> None:
    warnings: list[str] = []
    text = "# c\nRoot: a,\n  b\n\nroot: other\nempty:\n"
    got = parse_alias_source(text, "aliases", warn=warnings.append)
    assert got == {"root": "a, b"}
    assert warnings == ['aliases, line 5: duplicate entry: "root"',
                        'aliases, line 6: no value for alias "empty"']
    assert parse_alias_source("R: 1\nR: 2\n", "f", fold=False, replace=True,
                              warn=lambda m: None) == {"R": "2"}


def test_parse_alias_values() -> None:
    got = parse_alias_values('a, "|cmd arg, more", /file, :include:/path,, "john doe"@x.org')
    assert got == ["a", "|cmd arg, more", "/file", ":include:/path", '"john doe"@x.org']
    assert parse_alias_values('"|say \\"hi\\""') == ['|say "hi"']
    assert parse_alias_values("  ") == []
