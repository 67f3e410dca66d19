"""regexp: and pcre: tables: ordered pattern rules with ``if``/``endif`` and ``$N`` results.

Owns: the rule-file syntax shared by regexp_table(5) and pcre_table(5), translation of POSIX
regular expressions (regexp:) and PCRE patterns (pcre:) into Python ``re``, and result
substitution (``$1``..``$9``, ``${n}``, ``$$``).
Must not: fold the lookup key (the ``i`` flag does case-insensitivity, as in Postfix).
Invariants: rules are tried in file order and the first match wins; a ``$n`` reference beyond
the pattern's groups, or in a negated rule, is rejected when the file is read.

Known differences from Postfix, all inherent to Python ``re``: POSIX leftmost-longest
alternation is leftmost-first here (it only changes which text ``$n`` captures); pcre inline
flags such as ``(?i)`` must start the pattern; PCRE-only syntax (``\\K``, recursion, ``\\R``,
``\\h``) is rejected with the file and line.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from mailcore.errors import TableError
from mailcore.tables.base import FileWatch, Warn, log_warning, logical_lines

_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
}
_REGEXP_FLAGS = "imx"
_PCRE_FLAGS = "imsxAEUX"


def _bracket(pat: str, i: int) -> tuple[str, int]:
    """Translate a POSIX bracket expression starting after '['; return (python, next index)."""
    out = ["["]
    if i < len(pat) and pat[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pat):
        c = pat[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if pat.startswith("[:", i):
            end = pat.find(":]", i + 2)
            name = pat[i + 2 : end] if end > 0 else ""
            if name not in _POSIX_CLASSES:
                raise ValueError(f'invalid character class "[:{name}:]"')
            out.append(_POSIX_CLASSES[name])
            i = end + 2
            continue
        if pat.startswith("[.", i) or pat.startswith("[=", i):
            close = pat[i + 1] + "]"
            end = pat.find(close, i + 2)
            if end < 0:
                raise ValueError("unterminated collating element")
            out.append(re.escape(pat[i + 2 : end]))
            i = end + 2
            continue
        if c == "-" and i > 0 and pat[i - 1] not in "[^" and i + 1 < len(pat) and pat[i + 1] != "]":
            out.append("-")
        else:
            out.append(c if c.isalnum() else "\\" + c)
        i += 1
    raise ValueError("unmatched [ in regular expression")


def posix_to_python(pat: str, *, extended: bool, newline: bool) -> str:
    """Translate a POSIX ERE (or BRE when not extended) into Python ``re`` syntax."""
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\" and i + 1 < len(pat):
            n = pat[i + 1]
            i += 2
            if not extended and n in "(){}|+?":
                out.append(n)
            elif n in "wWsSbB" or (n.isdigit() and n != "0"):
                out.append("\\" + n)
            elif n in "<>":
                out.append(r"\b(?=\w)" if n == "<" else r"\b(?<=\w)")
            elif n in "`'":
                out.append(r"\A" if n == "`" else r"\Z")
            else:
                out.append(re.escape(n))
            continue
        if c == "[":
            text, i = _bracket(pat, i + 1)
            out.append(text)
            continue
        if c == "$" and not newline and (extended or i == len(pat) - 1):
            out.append(r"\Z")
        elif not extended and c in "(){}|+?":
            out.append("\\" + c)
        elif not extended and c == "*" and (not out or out[-1] in ("^", "(")):
            out.append(r"\*")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _pcre_to_python(pat: str, *, ungreedy: bool, dollar_end: bool) -> str:
    """Adapt PCRE syntax Python spells differently; U and E flags are rewritten here."""
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pat):
        c = pat[i]
        if c == "\\" and i + 1 < len(pat):
            n = pat[i + 1]
            if n == "Q":
                end = pat.find("\\E", i + 2)
                end = len(pat) if end < 0 else end
                out.append(re.escape(pat[i + 2 : end]))
                i = end + 2
                continue
            out.append({"z": r"\Z", "Z": r"(?=\n?\Z)"}.get(n, "\\" + n) if not in_class else c + n)
            i += 2
            continue
        if in_class:
            if pat.startswith("[:", i) and pat.find(":]", i) > 0:
                end = pat.find(":]", i)
                name = pat[i + 2 : end]
                if name not in _POSIX_CLASSES:
                    raise ValueError(f'invalid character class "[:{name}:]"')
                out.append(_POSIX_CLASSES[name])
                i = end + 2
                continue
            in_class = c != "]"
            # Escaped so Python never reads them as its future set operators.
            out.append("\\" + c if c in "[&~|" else c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append("[^" if pat.startswith("[^", i) else "[")
            i += 2 if pat.startswith("[^", i) else 1
            if i < len(pat) and pat[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if c == "(" and pat.startswith("(?<", i) and i + 3 < len(pat) and pat[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        if c == "(" and pat.startswith("(?", i):
            out.append("(?")
            i += 2
            continue
        if c == "$" and dollar_end:
            out.append(r"\Z")
            i += 1
            continue
        quant = re.match(r"[*+?]|\{\d+(,\d*)?\}", pat[i:])
        if quant and ungreedy:
            out.append(quant.group())
            i += len(quant.group())
            if i < len(pat) and pat[i] == "?":
                i += 1
            elif i < len(pat) and pat[i] == "+":
                out.append("+")
                i += 1
            else:
                out.append("?")
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negate: bool
    anchored: bool

    def search(self, key: str) -> re.Match[str] | None:
        return self.regex.match(key) if self.anchored else self.regex.search(key)


@dataclass(frozen=True)
class _Rule:
    line: int
    pattern: _Pattern
    unless: _Pattern | None
    result: str


@dataclass(frozen=True)
class _IfBlock:
    line: int
    pattern: _Pattern
    rules: tuple[_Rule | _IfBlock, ...]


def _compile(body: str, flags: str, pcre: bool) -> tuple[re.Pattern[str], bool]:
    opts = re.ASCII
    icase = True
    anchored = False
    if pcre:
        for f in flags:
            if f == "i":
                icase = not icase
            else:
                opts |= {"m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}.get(f, 0)
                anchored = anchored or f == "A"
        dollar_end = "E" in flags and "m" not in flags
        text = _pcre_to_python(body, ungreedy="U" in flags, dollar_end=dollar_end)
    else:
        extended = flags.count("x") % 2 == 0
        newline = flags.count("m") % 2 == 1
        icase = flags.count("i") % 2 == 0
        opts |= re.MULTILINE if newline else re.DOTALL
        text = posix_to_python(body, extended=extended, newline=newline)
    if icase:
        opts |= re.IGNORECASE
    with warnings.catch_warnings():
        # A pattern that Python might one day read as a nested set is still valid today.
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(text, opts), anchored


class _Parser:
    """Parses one rule file; errors carry the file and the line of the offending rule."""

    def __init__(self, filename: str, pcre: bool, warn: Warn) -> None:
        self.filename = filename
        self.pcre = pcre
        self.warn = warn
        self.line = 0

    def error(self, message: str) -> TableError:
        return TableError(message, file=self.filename, line=self.line)

    def pattern(self, text: str, pos: int) -> tuple[_Pattern, int]:
        negate = False
        while pos < len(text) and text[pos].isspace():
            pos += 1
        while pos < len(text) and text[pos] == "!":
            negate = not negate
            pos += 1
            while pos < len(text) and text[pos].isspace():
                pos += 1
        if pos >= len(text) or text[pos].isalnum() or text[pos].isspace():
            raise self.error("no regular expression pattern delimiter found")
        delim = text[pos]
        end = pos + 1
        while end < len(text) and text[end] != delim:
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise self.error(f'missing closing delimiter "{delim}" in pattern')
        body = text[pos + 1 : end]
        pos = end + 1
        allowed = _PCRE_FLAGS if self.pcre else _REGEXP_FLAGS
        start = pos
        while pos < len(text) and not text[pos].isspace() and text[pos] != "!":
            if text[pos] not in allowed:
                raise self.error(f'unknown regexp option "{text[pos]}"')
            pos += 1
        try:
            regex, anchored = _compile(body, text[start:pos], self.pcre)
        except (re.error, ValueError) as exc:
            raise self.error(f'bad regular expression "{body}": {exc}') from exc
        return _Pattern(regex, negate, anchored), pos

    def result(self, text: str, pattern: _Pattern) -> str:
        groups = pattern.regex.groups
        for m in re.finditer(r"\$(?:(\d+)|\{(\d+)\}|\{([^}]*)\}|\$)", text):
            if m.group(3) is not None:
                raise self.error(f'"${{{m.group(3)}}}": $number expected in result')
            digits = m.group(1) or m.group(2)
            if digits is None:
                continue
            if pattern.negate:
                raise self.error("$number found in negative match replacement")
            if not 1 <= int(digits) <= groups:
                raise self.error(f"out of range replacement index \"{digits}\"")
        return text

    def rule(self, text: str) -> _Rule:
        """One ``/pattern/flags result`` line (regexp also takes ``/p1/!/p2/ result``)."""
        pattern, pos = self.pattern(text, 0)
        unless = None
        if not self.pcre and pos < len(text) and text[pos] == "!":
            unless, pos = self.pattern(text, pos + 1)
            unless = _Pattern(unless.regex, True, unless.anchored)
        value = text[pos:].strip()
        if not value:
            self.warn(f"{self.filename}, line {self.line}: no replacement text: using empty string")
        return _Rule(self.line, pattern, unless, self.result(value, pattern))

    def parse(self, text: str) -> tuple[_Rule | _IfBlock, ...]:
        stack: list[tuple[int, _Pattern | None, list[_Rule | _IfBlock]]] = [(0, None, [])]
        for number, line in logical_lines(text):
            self.line = number
            word = re.match(r"(?i)(if|endif)(?![A-Za-z0-9])", line)
            if word and word.group(1).lower() == "if":
                pattern, pos = self.pattern(line, 2)
                if line[pos:].strip():
                    self.warn(f"{self.filename}, line {number}: ignoring extra text after IF")
                stack.append((number, pattern, []))
            elif word:
                if len(stack) == 1:
                    raise self.error("ignoring ENDIF without matching IF")
                if line[5:].strip():
                    self.warn(f"{self.filename}, line {number}: ignoring extra text after ENDIF")
                start, pattern, rules = stack.pop()
                assert pattern is not None
                stack[-1][2].append(_IfBlock(start, pattern, tuple(rules)))
            else:
                stack[-1][2].append(self.rule(line))
        if len(stack) > 1:
            self.line = stack[-1][0]
            raise self.error("IF has no matching ENDIF")
        return tuple(stack[0][2])


def expand_result(template: str, match: re.Match[str] | None) -> str:
    """Substitute $n / ${n} with match groups (unset groups give ""), and $$ with $."""

    def sub(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$"
        if match is None:
            return m.group()
        return match.group(int(m.group(1) or m.group(2))) or ""

    return re.sub(r"\$(?:(\d+)|\{(\d+)\}|\$)", sub, template)


def _first(rules: tuple[_Rule | _IfBlock, ...], key: str) -> str | None:
    for rule in rules:
        if isinstance(rule, _IfBlock):
            hit = rule.pattern.search(key)
            if (hit is None) == rule.pattern.negate:
                found = _first(rule.rules, key)
                if found is not None:
                    return found
            continue
        m = rule.pattern.search(key)
        if (m is None) != rule.pattern.negate:
            continue
        if rule.unless is not None and rule.unless.search(key) is not None:
            continue
        return expand_result(rule.result, None if rule.pattern.negate else m)
    return None


class RegexpTable:
    """regexp: (POSIX) or pcre: rules read from a file and re-read when it changes."""

    is_pattern = True

    def __init__(self, spec: str, path: Path, *, pcre: bool, warn: Warn = log_warning) -> None:
        self.spec = spec
        self.path = path
        self.pcre = pcre
        self._warn = warn
        self._watch = FileWatch(path)
        self._rules: tuple[_Rule | _IfBlock, ...] = ()
        self._reload()

    def _reload(self) -> None:
        rules = self._watch.reload(
            lambda text: _Parser(str(self.path), self.pcre, self._warn).parse(text))
        if rules is not None:
            self._rules = rules

    async def get(self, key: str) -> str | None:
        self._reload()
        return _first(self._rules, key)
