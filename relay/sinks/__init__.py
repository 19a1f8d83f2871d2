"""Where events go: `open_sink(url, options)` and one module per kind of sink."""

from .dispatch import open_sink as open_sink
from .encoding import encode_event as encode_event
from .options import SinkOptions as SinkOptions
from .python import load_python_sink as load_python_sink
from .routing import Route as Route
from .routing import RoutingSink as RoutingSink
from .stdout import StdoutSink as StdoutSink
from .webhook import WebhookSink as WebhookSink
from .webhook import sign as sign
from .webhook import verify_signature as verify_signature

__all__ = [
    "Route",
    "RoutingSink",
    "SinkOptions",
    "StdoutSink",
    "WebhookSink",
    "encode_event",
    "load_python_sink",
    "open_sink",
    "sign",
    "verify_signature",
]
