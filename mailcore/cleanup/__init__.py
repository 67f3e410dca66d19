"""cleanup: every message on its way into the queue passes through here.

Parts: writer.py (one message streamed to the spool: headers, checks, limits), service.py
(the Cleanup service: envelope rewriting and the durable enqueue), headers.py (Received and
stored attributes). Parameters: myhostname, mail_name, header_size_limit, hopcount_limit,
message_size_limit, always_add_missing_headers, the *_checks and rewriting parameters.
"""

from mailcore.cleanup.headers import envelope_attrs, header_name, received_header
from mailcore.cleanup.service import LOCAL_CLIENT, Cleanup, cleanup_settings
from mailcore.cleanup.writer import (
    CleanedMessage,
    CleanupReject,
    CleanupSettings,
    MessageWriter,
    open_writer,
)

__all__ = [
    "LOCAL_CLIENT",
    "CleanedMessage",
    "Cleanup",
    "CleanupReject",
    "CleanupSettings",
    "MessageWriter",
    "cleanup_settings",
    "envelope_attrs",
    "header_name",
    "open_writer",
    "received_header",
]
