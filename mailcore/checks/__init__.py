"""Postfix's built-in content inspection (header_checks(5)) for cleanup.

Owns: the public names of the checks package: ``mime`` (the streaming MIME state machine),
``actions`` (action parsing, reject replies, log lines) and ``content`` (table lookups and
per-message effects).
Must not: hold state of its own; see each module for its invariants.
"""

from mailcore.checks.actions import (
    BODY,
    HEADER,
    Action,
    ActionError,
    LogFacts,
    RejectReply,
    act_log_line,
    mime_error_log_line,
    parse_action,
)
from mailcore.checks.content import (
    MIME_HEADER_NAMES,
    ChecksSettings,
    ContentChecks,
    LineResult,
    MessageInspector,
    Verdict,
)
from mailcore.checks.mime import (
    BodyEvent,
    Event,
    HeaderEvent,
    HeaderKind,
    HeadersEnd,
    LineClass,
    MimeLimits,
    MimeTracker,
    header_name_length,
)

__all__ = [
    "BODY",
    "HEADER",
    "MIME_HEADER_NAMES",
    "Action",
    "ActionError",
    "BodyEvent",
    "ChecksSettings",
    "ContentChecks",
    "Event",
    "HeaderEvent",
    "HeaderKind",
    "HeadersEnd",
    "LineClass",
    "LineResult",
    "LogFacts",
    "MessageInspector",
    "MimeLimits",
    "MimeTracker",
    "RejectReply",
    "Verdict",
    "act_log_line",
    "header_name_length",
    "mime_error_log_line",
    "parse_action",
]
