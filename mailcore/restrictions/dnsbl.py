"""reject_rbl_client and the reject_rhsbl_* restrictions: DNS block lists and their replies.

Owns: the DNSBL query names (reversed IPv4 octets or the domain, then the list's domain),
the optional ``=127.0.0.2`` / ``=127.0.0.[2..5;9]`` reply filter, the TXT reason (records
joined with " / ", at most 500 characters), and the reply: rbl_reply_maps by list domain,
else default_rbl_reply, expanded with $rbl_code, $rbl_class, $rbl_what, $rbl_domain,
$rbl_reason (and $rbl_txt, $client, $client_address, $client_name, $helo_name, $sender,
$recipient and their _name/_domain parts); values outside smtpd_expansion_filter become "_".

Must not: cache answers between sessions, or block mail when the list cannot be reached
(a DNS failure is no listing, with a warning).

Invariants: IPv6 clients are not looked up (Postfix does not either).
"""

from __future__ import annotations

import re

from mailcore.config.expand import ExpansionError, expand
from mailcore.restrictions.access import rbl_template
from mailcore.restrictions.replies import dsn_fix, dsn_split
from mailcore.restrictions.run import DUNNO, Run
from mailcore.restrictions.types import CLASS_CLIENT

TXT_LIMIT = 500
_REPLY = re.compile(r"[45]\d\d ")


def _octet_matches(pattern: str, octet: str) -> bool:
    if pattern.startswith("[") and pattern.endswith("]"):
        for item in pattern[1:-1].split(";"):
            low, dots, high = item.partition("..")
            if dots and low.isdigit() and high.isdigit() and octet.isdigit():
                if int(low) <= int(octet) <= int(high):
                    return True
            elif item == octet:
                return True
        return False
    return pattern == octet


def reply_matches(pattern: str, address: str) -> bool:
    """The ``=d.d.d.d`` filter of a DNSBL restriction, with [n..m] and [a;b] octets."""
    wanted, got = re.findall(r"\[[^\]]*\]|[^.]+", pattern), address.split(".")
    return len(wanted) == len(got) and all(map(_octet_matches, wanted, got))


async def rbl_check(run: Run, arg: str, query_base: str, what: str, cls: str) -> int:
    """Look ``query_base`` up in the list ``arg`` (``domain`` or ``domain=filter``)."""
    domain, _, wanted = arg.partition("=")
    dns = run.res.dns()
    listed = await dns.query(f"{query_base}.{domain}", "A")
    if listed.temporary:
        run.warning(f"{query_base}.{domain}: RBL lookup error: {listed.detail}")
    if not listed.found:
        return DUNNO
    if wanted and not any(reply_matches(wanted, v) for v in listed.values):
        return DUNNO
    reason = ""
    txt = await dns.txt(f"{query_base}.{domain}")
    if txt.found:
        reason = " / ".join(txt.values)[:TXT_LIMIT]
    return await _reply(run, domain, what, cls, reason)


async def _reply(run: Run, domain: str, what: str, cls: str, reason: str) -> int:
    settings = run.res.settings
    names = {"rbl_code": str(settings.rbl_code), "rbl_domain": domain, "rbl_reason": reason,
             "rbl_txt": reason, "rbl_what": what, "rbl_class": cls, **_smtpd_names(run)}

    def lookup(name: str) -> str | None:
        value = names.get(name)
        if value is None:
            return None
        allowed = settings.expansion_filter
        return "".join(c if c in allowed else "_" for c in value) if allowed else value

    template = await rbl_template(run, domain)
    text = None
    if template is not None:
        try:
            text = expand(template, lookup)
        except ExpansionError:
            run.warning(f"bad rbl reply template for domain {domain}: {template}")
    if text is None:
        text = expand(settings.default_rbl_reply, lookup)
    if not _REPLY.match(text):
        run.warning(f"rbl response code configuration error: {text}")
        return run.reject(450, "4.7.1", "Service unavailable")
    dsn, rest = dsn_split("4.7.1", text[4:])
    return run.reject(int(text[:3]), dsn_fix(dsn, cls), rest or "Service unavailable")


def _addr_names(prefix: str, address: str | None) -> dict[str, str]:
    if address is None:
        return {}
    local, at, domain = address.rpartition("@")
    return {prefix: address or "<>", f"{prefix}_name": (local if at else address) or "<>",
            f"{prefix}_domain": domain if at else ""}


def _smtpd_names(run: Run) -> dict[str, str]:
    client, facts = run.facts.client, run.facts
    return {"client": client.display, "client_address": client.address,
            "client_name": client.name, "reverse_client_name": client.reverse_name,
            "helo_name": facts.helo, **_addr_names("sender", facts.sender),
            **_addr_names("recipient", run.recipient)}


async def reject_rbl_client(run: Run, arg: str) -> int:
    address = run.facts.client.address
    if not address or ":" in address:
        return DUNNO
    reversed_octets = ".".join(reversed(address.split(".")))
    return await rbl_check(run, arg, reversed_octets, address, CLASS_CLIENT)


async def reject_rhsbl(run: Run, arg: str, what: str, cls: str) -> int:
    """reject_rhsbl_sender/_recipient/_client/_helo: the domain of ``what``."""
    at = what.rfind("@")
    domain = what[at + 1:] if at >= 0 else what
    if not domain or domain.startswith("["):
        return DUNNO
    return await rbl_check(run, arg, domain, what, cls)
