"""The durable mail queue: one SQLite database under queue_directory, one writer task with
group commit, crash recovery on open.

Owns queue_directory's layout (``queue_paths``), the schema and its migrations, queue IDs,
message states (incoming, active, deferred, hold, corrupt) and per-recipient status.
Must not: schedule deliveries or speak any protocol.
Invariants: ``enqueue`` returns only after COMMIT with synchronous=FULL; every write goes
through the one writer; opening the queue returns anything left ``active`` to ``incoming``.
See docs/queue.md.
"""

from mailcore.queue.core import Queue
from mailcore.queue.schema import SCHEMA_VERSION, open_reader
from mailcore.queue.space import free_space_ok, minfree_warning, space_ok
from mailcore.queue.types import (
    ACTIVE,
    CORRUPT,
    DEFERRED,
    HOLD,
    INCOMING,
    RECIPIENT_STATUSES,
    STATES,
    NewMessage,
    NewRecipient,
    QueuedMessage,
    QueuedRecipient,
    QueueError,
    QueueFullError,
    QueuePaths,
    QueueReadError,
    QueueSchemaError,
    QueueWriteError,
    RecoveryReport,
    make_queue_dirs,
    queue_paths,
)
from mailcore.queue.writer import WriterStats
from mailcore.queue.writes import CHUNK_SIZE

__all__ = [
    "ACTIVE",
    "CHUNK_SIZE",
    "CORRUPT",
    "DEFERRED",
    "HOLD",
    "INCOMING",
    "RECIPIENT_STATUSES",
    "SCHEMA_VERSION",
    "STATES",
    "NewMessage",
    "NewRecipient",
    "Queue",
    "QueueError",
    "QueueFullError",
    "QueuePaths",
    "QueueReadError",
    "QueueSchemaError",
    "QueueWriteError",
    "QueuedMessage",
    "QueuedRecipient",
    "RecoveryReport",
    "WriterStats",
    "free_space_ok",
    "make_queue_dirs",
    "minfree_warning",
    "open_reader",
    "queue_paths",
    "space_ok",
]
