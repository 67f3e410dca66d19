"""smtpd access restrictions: who may send what to whom (smtpd_*_restrictions).

Owns: evaluating Postfix's restriction lists for each SMTP stage and returning a typed
``Verdict`` — the reply code, enhanced status and text Postfix would send, plus the side
effects (HOLD, DISCARD, REDIRECT, FILTER, PREPEND) and log events smtpd and cleanup apply.

Must not: speak SMTP, sleep, or count errors; smtpd does that with the verdict.

Parts: types.py (Facts, Verdict), core.py (Restrictions: parsing, per-Config resources),
stages.py (which lists run when), run.py (list walking, reply rules), builtins.py (each
restriction), access.py (check_*_access and table actions), recipients.py (recipient
validation), dnsbl.py (reject_rbl_client, reject_rhsbl_*), mxbackup.py (permit_mx_backup),
addresses.py (resolve, host name syntax), replies.py (status codes), settings.py.
"""

from mailcore.restrictions.core import DnsLookups, Restrictions
from mailcore.restrictions.types import (
    DEFER,
    PERMIT,
    REJECT,
    Deferral,
    Event,
    Facts,
    Verdict,
)

__all__ = ["DEFER", "PERMIT", "REJECT", "Deferral", "DnsLookups", "Event", "Facts",
           "Restrictions", "Verdict"]
