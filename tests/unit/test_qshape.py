"""qshape's arithmetic and layout (auxiliary/qshape/qshape.pl), on hand-computed cases."""

from __future__ import annotations

import pytest

from mailcore.qshape import Shape, ShapeOptions, bucket, domain_of, format_shape, headings

MIN = 60.0


def test_geometric_and_linear_headings() -> None:
    assert headings(ShapeOptions()) == [
        "T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"]
    assert headings(ShapeOptions(buckets=4, tick=10, linear=True)) == [
        "T", "10", "20", "30", "30+"]
    assert headings(ShapeOptions(buckets=3, tick=0.5)) == ["T", "0.5", "1", "1+"]


@pytest.mark.parametrize(("minutes", "geometric", "linear"), [
    (0, 1, 1), (4.9, 1, 1), (5, 2, 2), (9.9, 2, 2), (10, 3, 3), (19.9, 3, 4),
    (20, 4, 5), (39, 4, 8), (40, 5, 9), (10_000, 10, 10), (-3, 1, 1),
])
def test_buckets(minutes: float, geometric: int, linear: int) -> None:
    assert bucket(minutes * MIN, ShapeOptions()) == geometric
    assert bucket(minutes * MIN, ShapeOptions(linear=True)) == linear


def test_domain_normalisation() -> None:
    assert domain_of("User@Example.COM") == "example.com"
    assert domain_of("") == "MAILER-DAEMON"
    assert domain_of("a@b@host..example.org.") == "host.example.org"
    assert domain_of("@.lead.example") == "lead.example"
    assert domain_of("localuser") == "localuser"


def test_table_layout_recipients_and_totals() -> None:
    shape = Shape(ShapeOptions(buckets=4, tick=10))
    shape.add(1 * MIN, "s@x.org", ["a@one.example", "b@one.example", "c@two.example"])
    shape.add(25 * MIN, "", ["d@two.example"])
    shape.add(500 * MIN, "s@x.org", ["e@one.example"])
    shape.add(3 * MIN, "s@x.org", [])  # nothing pending: not counted at all
    expected = (
        f"{'':>64}  T 10 20 40 40+\n"
        f"{'TOTAL':>64}  5  3  0  1   1\n"
        f"{'one.example':>64}  3  2  0  0   1\n"
        f"{'two.example':>64}  2  1  0  1   0\n"
    )
    assert format_shape(shape) == expected
    assert all(len(line) == 80 for line in expected.splitlines())


def test_sender_domains_count_messages() -> None:
    shape = Shape(ShapeOptions(senders=True))
    shape.add(0, "", ["a@x", "b@y"])
    shape.add(0, "s@X.org", ["a@x", "b@y", "c@z"])
    rows = dict(shape.rows())
    assert rows["TOTAL"][0] == 2
    assert rows["MAILER-DAEMON"][0] == 1 and rows["x.org"][0] == 1


def test_parent_rollup_needs_enough_subdomains() -> None:
    opts = ShapeOptions(parents=True, min_subdomains=3)
    shape = Shape(opts)
    for host in ("a", "b", "c"):
        shape.add(0, "s@x", [f"u@{host}.mail.example.com"])
    shape.add(0, "s@x", ["u@b.example.net", "u@c.example.net"])
    names = [name for name, _ in shape.rows()]
    assert ".mail.example.com" in names  # three subdomains
    assert ".example.com" not in names  # only one (mail.example.com)
    assert ".example.net" not in names and ".com" not in names  # two; never a TLD
    assert dict(shape.rows())[".mail.example.com"][0] == 3
    assert shape.subdomains[".example.com"] == 1


def test_top_rows_and_truncated_names() -> None:
    shape = Shape(ShapeOptions(top=2))
    long_name = "a-very-long-subdomain-name." * 3 + "example"
    shape.add(0, "s@x", [f"u@{long_name}", f"v@{long_name}", "w@short.example"])
    rows = shape.rows()
    assert [name for name, _ in rows] == ["TOTAL", long_name]
    text = format_shape(shape).splitlines()
    assert len(text) == 3
    field = text[2][:len(text[2]) - len(text[2].lstrip("+abcdefghijklmnopqrstuvwxyz.-"))]
    assert text[2].startswith("+") and field.endswith("example")


def test_bad_options() -> None:
    with pytest.raises(ValueError):
        ShapeOptions(buckets=0)
    with pytest.raises(ValueError):
        ShapeOptions(tick=0)
