"""What the fake connector records and reads in an activity: `Recorded`, `Failure`, streaminfo.

`stream_info(activity)` is an activity's `streaminfo` entity (Teams' streaming protocol);
`opens_stream(info)` says whether it starts a stream. A `Failure` is a scheduled refusal of the
next posts that match it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Failure:
    status: int
    count: int = 1
    code: str | None = None
    message: str = ""
    retry_after: float | None = None
    # Only posts whose activity matches every key here fail: "type", "text", or a streaminfo
    # field ("streamType", "streamSequence", "streamId").
    match: dict[str, Any] = field(default_factory=dict)

    def matches(self, activity: dict) -> bool:
        for key, want in self.match.items():
            if key.startswith("stream"):
                have = (stream_info(activity) or {}).get(key)
            else:
                have = activity.get(key)
            if have != want:
                return False
        return True


@dataclass
class Recorded:
    """One accepted post."""

    conversation_id: str
    reply_to_id: str | None
    activity: dict
    id: str
    at: float  # time.monotonic() when received (pacing checks)
    wall: float  # time.time()
    authorization: str | None

    @property
    def type(self) -> str:
        return self.activity.get("type", "")

    @property
    def text(self) -> str:
        return self.activity.get("text") or ""

    @property
    def stream(self) -> dict | None:
        return stream_info(self.activity)

    def as_json(self) -> dict:
        return {
            "conversation_id": self.conversation_id,
            "reply_to_id": self.reply_to_id,
            "activity": self.activity,
            "id": self.id,
            "at": self.wall,
            "authorization": self.authorization,
        }


def stream_info(activity: dict) -> dict | None:
    for entity in activity.get("entities") or []:
        if isinstance(entity, dict) and entity.get("type") == "streaminfo":
            return entity
    return None


def opens_stream(info: dict) -> bool:
    """Whether a streaminfo is a stream's first update (informative, or the first words)."""
    return info.get("streamType") in ("informative", "streaming") and not info.get("streamId")
