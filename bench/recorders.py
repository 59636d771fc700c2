"""Recording fakes: each timestamps what the benches measure, on the bench process's clock.

Every timestamp here is `time.monotonic()` — one clock for the load generator, the fake model,
the fake Slack Web API and the fake Teams connector (CLOCK_MONOTONIC is system-wide on Linux,
so the service subprocess shares it too).

- `ModelClock` (a `FakeOpenAI`) records, per chat request, when it arrived and when its last
  byte was written, keyed by the tag (`[m123]`) in the last user message. "Minus the model's own
  time" subtracts exactly that interval: arrival → end of the response, as the fake saw it.
- `SlackRecorder` (a `FakeSlack`) records, per thread, when the first streamed text arrived
  (`chat.startStream`/`chat.appendStream` with text, or `chat.postMessage`) and when the reply
  was complete (`chat.stopStream`, or `chat.postMessage` when not streaming).
- `TeamsRecorder` (a `FakeConnector`) records, per conversation, the first text the user can see
  (a streaming update with text, or a message) and the final message.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.tags import TAG, tag_of
from tests.support.fakes.fake_connector import FakeConnector, opens_stream, stream_info
from tests.support.fakes.fake_openai import FakeOpenAI, _last_user_text
from tests.support.fakes.fake_slack import FakeSlack


@dataclass
class ModelCall:
    started: float
    first_token: float | None = None
    ended: float | None = None


class ModelClock(FakeOpenAI):
    """FakeOpenAI that remembers when each tagged request started and ended."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.calls: dict[str, ModelCall] = {}
        self.keep_requests = False

    async def _record(self, request):  # type: ignore[override]
        recorded = await super()._record(request)
        request["bench_recorded"] = recorded
        if not self.keep_requests:
            self.requests.clear()  # a long run must not grow the bench process
        return recorded

    async def _chat(self, request):  # type: ignore[override]
        started = time.monotonic()
        resp = await super()._chat(request)
        ended = time.monotonic()
        recorded = request.get("bench_recorded")
        msgs = recorded.messages if recorded is not None else None
        if msgs:
            tag = tag_of(_last_user_text(msgs))
            if tag:
                first = started + self.delay + self.first_token_delay
                self.calls[tag] = ModelCall(started, first_token=first, ended=ended)
        return resp


@dataclass
class Reply:
    first_text: float | None = None
    done: float | None = None
    streams: int = 0
    posts: int = 0
    last_stream_post: float | None = None  # Teams: the last update of an open stream


class SlackRecorder(FakeSlack):
    """FakeSlack that timestamps the first visible text and the end of each thread's reply."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.replies: dict[tuple[str, str | None], Reply] = defaultdict(Reply)
        self.waiters: dict[tuple[str, str | None], asyncio.Future] = {}
        self.keep_calls = False
        self.method_counts: dict[str, int] = defaultdict(int)  # every Web API call, by method

    async def _api(self, request):  # type: ignore[override]
        self.method_counts[request.match_info["method"]] += 1
        return await super()._api(request)

    def _thread_key(self, params: dict) -> tuple[str, str | None]:
        m = self.state.messages.get((params.get("channel"), params.get("ts")))
        return (m.channel, m.thread_ts) if m else (params.get("channel", ""), None)

    def _saw_text(self, key, text: str) -> None:
        r = self.replies[key]
        if text and r.first_text is None:
            r.first_text = time.monotonic()

    def _done(self, key) -> None:
        r = self.replies[key]
        r.done = time.monotonic()
        fut = self.waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(r.done)

    def _trim(self) -> None:
        if not self.keep_calls:
            self.state.calls.clear()

    def _m_chat_startStream(self, params):  # type: ignore[override]
        out = super()._m_chat_startStream(params)
        key = (params["channel"], params["thread_ts"])
        self.replies[key].streams += 1
        self._saw_text(key, self._chunk_text(params))
        self._trim()
        return out

    def _m_chat_appendStream(self, params):  # type: ignore[override]
        out = super()._m_chat_appendStream(params)
        self._saw_text(self._thread_key(params), self._chunk_text(params))
        self._trim()
        return out

    def _m_chat_stopStream(self, params):  # type: ignore[override]
        out = super()._m_chat_stopStream(params)
        key = self._thread_key(params)
        self._saw_text(key, self._chunk_text(params))
        self._done(key)
        self._trim()
        return out

    def _m_chat_postMessage(self, params):  # type: ignore[override]
        out = super()._m_chat_postMessage(params)
        key = (params["channel"], params.get("thread_ts") or None)
        self.replies[key].posts += 1
        self._saw_text(key, params.get("markdown_text") or params.get("text") or "")
        self._done(key)
        self._trim()
        return out

    def wait(self, key: tuple[str, str | None]) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        r = self.replies.get(key)
        if r is not None and r.done is not None:
            fut.set_result(r.done)
        else:
            self.waiters[key] = fut
        return fut

    def reply_tags(self) -> dict[str, int]:
        """How many finished bot messages carry each tag (the fake model echoes the tag)."""
        counts: dict[str, int] = defaultdict(int)
        for m in self.state.messages.values():
            if not m.deleted and not m.streaming:
                for t in set(TAG.findall(m.text)):
                    counts[f"[m{t}]"] += 1
        return counts


class TeamsRecorder(FakeConnector):
    """FakeConnector that timestamps the first visible text and the final message."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[str, Reply] = defaultdict(Reply)
        self.waiters: dict[str, asyncio.Future] = {}
        self.keep_activities = False

    def _accept(self, request, conversation_id, reply_to_id, activity):  # type: ignore[override]
        resp = super()._accept(request, conversation_id, reply_to_id, activity)
        if resp.status >= 300:
            return resp
        now = time.monotonic()
        r = self.replies[conversation_id]
        info = stream_info(activity) or {}
        kind = info.get("streamType")
        text = activity.get("text") or ""
        visible = activity.get("type") == "message" or kind == "streaming"
        if visible and text and r.first_text is None:
            r.first_text = now
        if opens_stream(info):
            r.streams += 1
        if kind in ("informative", "streaming"):
            r.last_stream_post = now
        if activity.get("type") == "message":
            r.posts += 1
            r.done = now
            fut = self.waiters.pop(conversation_id, None)
            if fut is not None and not fut.done():
                fut.set_result(now)
        if not self.keep_activities:
            self.activities.clear()
            if kind == "final":
                self._streams.pop(info.get("streamId"), None)
        return resp

    def wait(self, conversation_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        r = self.replies.get(conversation_id)
        if r is not None and r.done is not None:
            fut.set_result(r.done)
        else:
            self.waiters[conversation_id] = fut
        return fut
