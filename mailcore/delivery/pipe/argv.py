"""pipe(8) argv= macros: parsing the words and expanding them for one request.

Owns: ``$name``, ``${name}``, ``$(name)`` and ``$$`` in argv words (Postfix's mac_parse);
the message macros (``$sender``, ``$nexthop``, ``$size``, ``$queue_id``, the client and SASL
attributes) expanded once, and the recipient macros (``$recipient``, ``$original_recipient``,
``$user``, ``$extension``, ``$mailbox``, ``$domain``) that turn one word into one argument per
recipient; flags q, u and h; recipient_delimiter splitting as Postfix's split_addr.

Must not: expand a macro's value again (values are inserted in one pass, so a ``$`` in an
address stays inert), involve a shell, or read the message.
Invariants: an unknown, empty or truncated macro name is a ConfigError with the master.cf
file and line; a recipient whose ``${user}`` would be empty contributes no argument.
Parameters: recipient_delimiter, owner_request_special, double_bounce_sender (via Splitter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailcore.config.master import PipeSpec
from mailcore.delivery.pipe.address import (
    MAILER_DAEMON,
    fold_address,
    internal_form,
    quote_822_local,
)
from mailcore.errors import ConfigError
from mailcore.model import DeliveryRequest, RecipientRef

RECIPIENT_MACROS = frozenset({"recipient", "original_recipient", "user", "extension",
                              "mailbox", "domain"})
MESSAGE_MACROS = frozenset({"sender", "nexthop", "size", "queue_id", "client_address",
                            "client_hostname", "client_port", "client_protocol",
                            "client_helo", "sasl_method", "sasl_username", "sasl_sender"})
MACROS = RECIPIENT_MACROS | MESSAGE_MACROS
# request attribute (as cleanup stores it) behind each client macro
_ATTR_MACROS = {"client_address": "client_address", "client_hostname": "client_name",
                "client_port": "client_port", "client_protocol": "protocol_name",
                "client_helo": "helo_name", "sasl_method": "sasl_method",
                "sasl_username": "sasl_username", "sasl_sender": "sasl_sender"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class ArgTemplate:
    """One argv= word: literal text and macro names, in order (macro entries are
    ``(True, name)``); ``recipient_macros`` says whether it repeats per recipient."""

    parts: tuple[tuple[bool, str], ...]
    recipient_macros: frozenset[str]


def parse_arg(word: str, *, file: str | None = None, line: int | None = None) -> ArgTemplate:
    """Parse ``$name``, ``${name}``, ``$(name)`` and ``$$`` as Postfix's mac_parse does."""
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    index = 0
    while index < len(word):
        char = word[index]
        if char != "$":
            literal.append(char)
            index += 1
            continue
        if word[index + 1:index + 2] == "$":
            literal.append("$")
            index += 2
            continue
        name, index = _macro_name(word, index + 1, file, line)
        if literal:
            parts.append((False, "".join(literal)))
            literal = []
        parts.append((True, name))
    if literal:
        parts.append((False, "".join(literal)))
    names = frozenset(text for is_macro, text in parts if is_macro)
    return ArgTemplate(tuple(parts), names & RECIPIENT_MACROS)


def _macro_name(word: str, index: int, file: str | None, line: int | None) -> tuple[str, int]:
    opener = word[index:index + 1]
    if opener in ("{", "("):
        closer = "}" if opener == "{" else ")"
        end = word.find(closer, index + 1)
        if end < 0:
            raise ConfigError(f'pipe: truncated macro reference in argv word "{word}"',
                              file=file, line=line)
        name, index = word[index + 1:end], end + 1
    else:
        end = index
        while end < len(word) and word[end] in _NAME_CHARS:
            end += 1
        name, index = word[index:end], end
    if not name:
        raise ConfigError(f'pipe: empty macro name in argv word "{word}"', file=file, line=line)
    if name not in MACROS:
        raise ConfigError(f'pipe: unknown macro name "{name}" in argv word "{word}"; known: '
                          + ", ".join(sorted(MACROS)), file=file, line=line)
    return name, index


@dataclass(frozen=True)
class Splitter:
    """recipient_delimiter as Postfix's split_addr applies it to ${user} and ${extension}."""

    delimiters: str
    owner_request_special: bool = True
    reserved: tuple[str, ...] = ("postmaster", MAILER_DAEMON.lower(), "double-bounce")

    def split(self, local: str) -> tuple[str, str]:
        lowered = local.lower()
        if not self.delimiters or lowered in self.reserved:
            return local, ""
        if "-" in self.delimiters and self.owner_request_special and (
                lowered.startswith("owner-")
                or (len(lowered) > 8 and lowered.endswith("-request"))):
            return local, ""
        cut = next((i for i, c in enumerate(local) if c in self.delimiters), len(local))
        if cut in (0, len(local)):
            return local, ""
        return local[:cut], local[cut + 1:]


def recipient_values(address: str, orig: str, names: frozenset[str], flags: str,
                     splitter: Splitter) -> dict[str, str] | None:
    """The recipient macros one argument uses; None when ${user} would be empty (Postfix then
    leaves this recipient's argument out)."""
    fold = {"user": "u" in flags, "host": "h" in flags}
    internal = internal_form(address)

    def morph(text: str) -> str:  # $recipient, $original_recipient: q then fold
        return fold_address(quote_822_local(text) if "q" in flags else text, **fold)

    folded = fold_address(internal, **fold)
    local, at, domain = folded.rpartition("@")
    if not at:
        local, domain = folded, ""
    user, extension = splitter.split(local)
    if "user" in names and not user:
        return None
    values = {"mailbox": local, "domain": domain, "user": user, "extension": extension}
    if "recipient" in names:
        values["recipient"] = morph(internal)
    if "original_recipient" in names:
        values["original_recipient"] = morph(internal_form(orig)) if orig else ""
    return values


def expand_argv(templates: Sequence[ArgTemplate], message: Mapping[str, str],
                recipients: Sequence[RecipientRef], flags: str,
                splitter: Splitter) -> list[str]:
    """The command's argv: message macros once, recipient macros once per recipient."""
    argv: list[str] = []
    for template in templates:
        if not template.recipient_macros:
            argv.append(_render(template, message))
            continue
        for rcpt in recipients:
            values = recipient_values(rcpt.address, rcpt.orig_rcpt or "",
                                      template.recipient_macros, flags, splitter)
            if values is not None:
                argv.append(_render(template, {**message, **values}))
    return argv


def _render(template: ArgTemplate, values: Mapping[str, str]) -> str:
    # One pass, never recursive: a value containing "$" stays as it is.
    return "".join(values.get(text, "") if is_macro else text
                   for is_macro, text in template.parts)


def message_values(request: DeliveryRequest, spec: PipeSpec) -> dict[str, str]:
    """The macros that do not depend on the recipient."""
    attrs = dict(request.attrs)
    sender = envelope_sender(request.sender, spec.null_sender)
    values = {name: attrs.get(attr, "") for name, attr in _ATTR_MACROS.items()}
    values.update({
        "sender": quote_822_local(sender) if sender and "q" in spec.flags else sender,
        "nexthop": request.nexthop.lower() if "h" in spec.flags else request.nexthop,
        "size": str(request.size),
        "queue_id": request.queue_id,
    })
    return values


def envelope_sender(sender: str, null_sender: str) -> str:
    """The sender in internal form; the null sender becomes null_sender (may be empty)."""
    return internal_form(sender) if sender else null_sender

