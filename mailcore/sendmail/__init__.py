"""The sendmail command: argv parsing as Postfix's sendmail(1) does it, reading the message,
``-t`` recipient extraction, writing the maildrop file, and the ``sendmail -bs`` sink.

Parts: exits.py (sysexits.h statuses, SendmailExit), args.py (the option grammar and
SendmailArgs), addrlist.py (RFC 5322 address lists and address validation), extract.py
(-t header extraction), submit.py (reading input, the envelope, writing the maildrop),
sink.py (MaildropSink for -bs). This module only re-exports their public names.
Must not: touch the queue database or cleanup; pickup feeds maildrop files into cleanup.

Invariants: every address, from argv or from headers, goes through
mailcore.address.parse_address and is_hostile_local; a maildrop file appears only when the
whole message was read and every recipient validated. Parameters (read by the caller and
passed in): queue_directory, message_size_limit, header_size_limit, smtpd_recipient_limit,
sendmail_fix_line_endings.
"""

from mailcore.sendmail.addrlist import (
    parse_address_list,
    recipients_from_argument,
    sender_from_option,
    validate_address,
)
from mailcore.sendmail.args import SendmailArgs, default_mode, parse_argv, parse_notify
from mailcore.sendmail.exits import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_NOUSER,
    EX_OK,
    EX_OSERR,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    SendmailExit,
)
from mailcore.sendmail.extract import RECIPIENT_HEADERS, RESENT_HEADERS, HeaderExtractor
from mailcore.sendmail.sink import MaildropSink, MaildropSinkWriter
from mailcore.sendmail.submit import (
    InputLimits,
    Submitter,
    copy_message,
    input_lines,
    resolve_envelope_parties,
    submit,
)

__all__ = [
    "EX_CANTCREAT",
    "EX_DATAERR",
    "EX_NOUSER",
    "EX_OK",
    "EX_OSERR",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "RECIPIENT_HEADERS",
    "RESENT_HEADERS",
    "HeaderExtractor",
    "InputLimits",
    "MaildropSink",
    "MaildropSinkWriter",
    "SendmailArgs",
    "SendmailExit",
    "Submitter",
    "copy_message",
    "default_mode",
    "input_lines",
    "parse_address_list",
    "parse_argv",
    "parse_notify",
    "recipients_from_argument",
    "resolve_envelope_parties",
    "sender_from_option",
    "submit",
    "validate_address",
]
