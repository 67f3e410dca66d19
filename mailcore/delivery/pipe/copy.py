"""pipe(8) message copy: what the command reads on stdin, line by line (flags F R O D > . B).

Owns: the prepended ``From_``, ``Return-Path:``, ``X-Original-To:`` and ``Delivered-To:``
lines in Postfix's order, the per-line ``>From`` quoting, dot-stuffing and eol=, and flag D's
``Delivered-To:`` loop check over the header block.
Must not: write to the command or hold the whole message in memory (lines are streamed by
the agent); open the queue file itself.
Invariants: addresses appear in internal form, local part quoted as RFC 822 requires; the
null sender is ``MAILER-DAEMON`` in ``From_`` and ``<>`` in ``Return-Path:``.
Parameters: none (the PipeSpec flags only).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from mailcore.config.master import PipeSpec
from mailcore.delivery.pipe.address import MAILER_DAEMON, internal_form, quote_822_local
from mailcore.model import RecipientRef


def prepended_lines(spec: PipeSpec, sender: str, recipient: RecipientRef,
                    now: float) -> list[str]:
    """From_, Return-Path:, X-Original-To: and Delivered-To:, in Postfix's order."""
    lines: list[str] = []
    quoted = quote_822_local(sender) if sender else ""
    if "F" in spec.flags:
        stamp = time.asctime(time.localtime(now))
        lines.append(f"From {quoted or MAILER_DAEMON}  {stamp}")
    if "R" in spec.flags:
        lines.append(f"Return-Path: <{quoted}>")
    if "O" in spec.flags and recipient.orig_rcpt:
        lines.append(f"X-Original-To: {quote_822_local(internal_form(recipient.orig_rcpt))}")
    if "D" in spec.flags:
        lines.append(f"Delivered-To: {quote_822_local(internal_form(recipient.address))}")
    return lines


def copy_line(line: bytes, flags: str, eol: bytes) -> bytes:
    """One stored line as the command gets it: >From quoting, dot-stuffing, eol."""
    if ">" in flags and line.startswith(b"From "):
        line = b">" + line
    if "." in flags and line.startswith(b"."):
        line = b"." + line
    return line + eol


async def delivered_to_loop(lines: AsyncIterator[bytes], recipient: str) -> bool:
    """Flag D's loop check: does the header block hold ``Delivered-To: recipient``?"""
    wanted = internal_form(recipient).lower()
    found: list[list[str]] = []
    in_header = False
    async for raw in lines:
        if not raw.strip():
            break
        text = raw.decode("utf-8", "replace")
        if text[:1] in (" ", "\t"):
            if in_header:
                found[-1].append(text.strip())
            continue
        name, colon, value = text.partition(":")
        in_header = bool(colon) and name.strip().lower() == "delivered-to"
        if in_header:
            found.append([value.strip()])
    return any(internal_form(" ".join(parts).strip()).lower() == wanted for parts in found)

