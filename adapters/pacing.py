"""When `LiveStream` (adapters/streaming.py) sends the next update of a live message.

An update goes out at most once per `Sink.interval`. A sink may also ask for updates worth
their call: with `min_update` set, an open live message is not updated for fewer than
`min_update` new characters until they have waited `hold` seconds; the reply's end (the
platform's close call) carries whatever is still held. A short reply is then one open and
one close — Slack's `chat.startStream` and `chat.stopStream` — even when a busy process takes
longer than one interval to read the model's few chunks, while a long reply still updates
about once per interval (a model writes `min_update` characters in well under a second).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.streaming import LiveStream


def next_update(stream: LiveStream) -> float:
    """The loop time at which the next update of `stream` may go out."""
    last = stream._last
    if last is None:
        return -math.inf  # nothing shown yet: the first words go out at once
    at = last + stream._interval
    min_update = getattr(stream.sink, "min_update", 0)
    if min_update and stream.mode == "native" and stream._live is not None:
        if len(stream.text) - stream._seen < min_update:
            at = max(at, last + getattr(stream.sink, "hold", 0.0))
    return at


def update_due(stream: LiveStream) -> bool:
    return stream._loop.time() >= next_update(stream)
