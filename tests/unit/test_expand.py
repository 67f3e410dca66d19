"""$name expansion, pinned to Postfix's postconf(5) "$name" rules and mac_expand(3)."""

import pytest

from mailcore.config.expand import ExpansionError, compare, expand


def lookup_from(values):
    return values.get


def test_plain_and_braced_references():
    values = {"myhostname": "mx.example.com", "mydomain": "example.com"}
    assert expand("$myhostname", values.get) == "mx.example.com"
    assert expand("${mydomain}x", values.get) == "example.comx"
    assert expand("$(mydomain)", values.get) == "example.com"
    assert expand("localhost.$mydomain, $myhostname", values.get) == (
        "localhost.example.com, mx.example.com"
    )


def test_recursive_expansion():
    values = {"a": "$b.$c", "b": "x", "c": "${b}y"}
    assert expand("$a", values.get) == "x.xy"


def test_undefined_name_is_empty():
    assert expand("[$nosuch]", {}.get) == "[]"


def test_double_dollar_is_literal():
    assert expand("cost $$5", {}.get) == "cost $5"


def test_loop_is_detected_and_named():
    values = {"a": "$b", "b": "${a}"}
    with pytest.raises(ExpansionError, match="a -> b -> a"):
        expand("$a", values.get)


def test_conditional_forms():
    values = {"set": "v", "empty": ""}
    assert expand("${set?yes}", values.get) == "yes"
    assert expand("${empty?yes}", values.get) == ""
    assert expand("${set:no}", values.get) == ""
    assert expand("${empty:no}", values.get) == "no"
    assert expand("${set?{$set!}:{none}}", values.get) == "v!"
    assert expand("${empty?{$set}:{none}}", values.get) == "none"


def test_postfix_default_expressions():
    values = {"compatibility_level": "0", "stress": ""}
    expr = "${{$compatibility_level} <level {2} ? {subnet} : {host}}"
    assert expand(expr, values.get) == "subnet"
    values["compatibility_level"] = "3.6"
    assert expand(expr, values.get) == "host"
    assert expand("${stress?{10}:{300}}s", values.get) == "300s"
    values["stress"] = "yes"
    assert expand("${stress?{10}:{300}}s", values.get) == "10s"


def test_comparisons():
    assert compare("3.6", "<level", "3.10")
    assert not compare("3.10", "<level", "3.6")
    assert compare("10", ">", "9")
    assert compare("a", "!=", "b")
    with pytest.raises(ExpansionError):
        compare("x", "<", "1")
    with pytest.raises(ExpansionError):
        compare("1", "~", "1")


def test_bad_syntax():
    with pytest.raises(ExpansionError):
        expand("${unterminated", {}.get)
    assert expand("a$-b $", {}.get) == "a$-b $"
