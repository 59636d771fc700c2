"""A ReplyTarget that records what the bot posted (unit and core tests)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingStream:
    parent: RecordingReply
    deltas: list[str] = field(default_factory=list)
    final: str | None = None
    answer: object = None  # the AnswerInfo a final model answer carried

    async def append(self, text: str) -> None:
        self.deltas.append(text)

    async def finish(self, text: str, *, answer: object = None) -> None:
        self.final = text
        self.answer = answer
        self.parent.posts.append(text)


@dataclass
class RecordingReply:
    posts: list[str] = field(default_factory=list)
    typing_calls: int = 0
    streams: list[RecordingStream] = field(default_factory=list)

    async def typing(self) -> None:
        self.typing_calls += 1

    async def send(self, text: str) -> None:
        self.posts.append(text)

    def stream(self) -> RecordingStream:
        s = RecordingStream(self)
        self.streams.append(s)
        return s
