"""relay: a transactional-outbox relay for PostgreSQL, on trio."""

# The one place the version is written: the package build and `relay --version` read it here.
__version__ = "0.1.0"

from .backoff import Backoff as Backoff
from .config import Config as Config
from .errors import ConfigError as ConfigError
from .errors import DsnRejected as DsnRejected
from .errors import ListenerLost as ListenerLost
from .errors import MigrationRefused as MigrationRefused
from .errors import NotRestartable as NotRestartable
from .errors import OutboxUnavailable as OutboxUnavailable
from .errors import OutboxUnreachable as OutboxUnreachable
from .errors import OutputClosed as OutputClosed
from .errors import PartialDelivery as PartialDelivery
from .errors import RelayError as RelayError
from .errors import RestartIntensityExceeded as RestartIntensityExceeded
from .errors import SchemaMissing as SchemaMissing
from .errors import SinkFailed as SinkFailed
from .errors import SinkUnavailable as SinkUnavailable
from .errors import TransactionRequired as TransactionRequired
from .errors import Unreachable as Unreachable
from .ports import OutboxEvent as OutboxEvent
from .ports import Sink as Sink
from .postgres.enqueue import NewEvent as NewEvent
from .postgres.enqueue import enqueue as enqueue
from .postgres.enqueue import enqueue_async as enqueue_async
from .postgres.enqueue import enqueue_many as enqueue_many
from .postgres.enqueue import enqueue_many_async as enqueue_many_async
from .runtime import RelayHandle as RelayHandle
from .runtime import RelayStatistics as RelayStatistics
from .runtime import open_relay as open_relay
from .runtime import run_relay as run_relay
from .tracing import trace_headers as trace_headers
from .wakeups import WakeReason as WakeReason

__all__ = [
    "Backoff",
    "Config",
    "ConfigError",
    "DsnRejected",
    "ListenerLost",
    "MigrationRefused",
    "NewEvent",
    "NotRestartable",
    "OutboxEvent",
    "OutboxUnavailable",
    "OutboxUnreachable",
    "OutputClosed",
    "PartialDelivery",
    "RelayError",
    "RelayHandle",
    "RelayStatistics",
    "RestartIntensityExceeded",
    "SchemaMissing",
    "Sink",
    "SinkFailed",
    "SinkUnavailable",
    "TransactionRequired",
    "Unreachable",
    "WakeReason",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "open_relay",
    "run_relay",
    "trace_headers",
]
