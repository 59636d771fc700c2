"""One reply-stream contract, three sinks: Slack, Teams and the console, through the one core.

Slack runs through the real `AsyncWebClient` against the fake Web API, Teams through the real
connector client against the fake connector (which checks Teams' streaming protocol), the
console into a StringIO. Each harness says what its reader sees (`visible`: the messages, in
order) and when the live message was updated (`updates`).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time

import pytest
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

from adapters import console
from adapters.console import ConsoleReply, ConsoleSink
from adapters.slack.api import make_client
from adapters.slack.reply import SlackReplies, SlackReplyTarget
from adapters.streaming import Refused
from adapters.teams import stream as teams_stream
from adapters.teams.connector import Outbound
from adapters.teams.reply import Destination, TeamsReplyTarget
from adapters.teams.stream import TeamsSink
from adapters.text import utf16_length
from bot.metrics import Metrics
from tests.support.fakes.fake_connector import FakeConnector, opens_stream
from tests.support.fakes.fake_slack import FakeSlack
from tests.support.fixtures.teams.harness import load

ROOT = "1700000100.000100"
INTERVAL = 0.05  # fast pacing for every sink; the coalescing test sets its own


class SlackHarness:
    can_replace = True  # edits put the final text in place of the draft

    def __init__(self, fake: FakeSlack, monkeypatch) -> None:
        self.fake = fake
        self.limit = 11_000
        self.interval = INTERVAL

    def reply(self) -> SlackReplyTarget:
        replies = SlackReplies(
            make_client(self.fake.token, self.fake.api_url),
            Metrics(),
            stream_interval=self.interval,
            stream_min_update=0,  # every update sent (pacing: tests/unit/test_stream_pacing.py)
            update_interval=self.interval,
            message_limit=self.limit,
        )
        return SlackReplyTarget(
            replies, channel="C1", thread_ts=ROOT, message_ts=ROOT, team_id="T1", user_id="U1"
        )

    def refuse(self, *, midway: bool = False) -> None:
        method = "chat.appendStream" if midway else "chat.startStream"
        self.fake.fail(method, error="not_allowed")

    def visible(self) -> list[str]:
        return self.fake.thread_texts("C1", ROOT)

    def was_refused(self) -> bool:
        return any(not c.ok for c in self.fake.calls)

    def updates(self) -> list[float]:
        return [c.t for c in self.fake.calls_to("chat.startStream", "chat.appendStream")]

    def untouched(self) -> bool:
        """Nothing shown was taken back or rewritten."""
        return not self.fake.calls_to("chat.update", "chat.delete")

    def calls(self) -> int:
        return len(self.fake.calls)

    def length(self, text: str) -> int:
        return len(text)


class TeamsFactory:
    """The SDK factory's part the pool uses: real connector clients for the fake connector."""

    async def create_connector_client(self, context, identity, service_url, audience, scopes,
                                      use_anonymous=False):  # fmt: skip
        return TeamsConnectorClient(endpoint=service_url, token="token")


class TeamsHarness:
    can_replace = True  # the stream's final message may carry any text

    def __init__(self, fake: FakeConnector, monkeypatch) -> None:
        self.fake = fake
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(Outbound, "backoff", 0.01)
        monkeypatch.setattr(TeamsSink, "open_wait", 0.5)
        self.interval = INTERVAL
        self.outbound = Outbound(TeamsFactory(), app_id=None, anonymous=True, metrics=Metrics())  # type: ignore[arg-type]

    @property
    def limit(self) -> int:
        return teams_stream.MAX_MESSAGE_LENGTH

    @limit.setter
    def limit(self, value: int) -> None:
        self.monkeypatch.setattr(teams_stream, "MAX_MESSAGE_LENGTH", value)

    def reply(self) -> TeamsReplyTarget:
        self.monkeypatch.setattr(TeamsSink, "interval", self.interval)
        activity = Activity.model_validate(load("personal_message", service_url=self.fake.url))
        destination = Destination(activity.get_conversation_reference(), activity.id)
        return TeamsReplyTarget(self.outbound, destination, streaming=True, metrics=Metrics())

    def refuse(self, *, midway: bool = False) -> None:
        if midway:
            self.fake.fail(403, code="ContentStreamNotAllowed", match={"streamSequence": 2})
        else:
            self.fake.fail(400, code="BadArgument", count=100, match={"streamType": "streaming"})

    def visible(self) -> list[str]:
        """Plain messages, and each stream as its final message or else its last chunk."""
        order: list[str] = []
        shown: dict[str, str] = {}
        for a in self.fake.activities:
            info = a.stream
            if info is None:
                if a.type == "message":
                    order.append(a.id)
                    shown[a.id] = a.text
            elif opens_stream(info):
                order.append(a.id)
                shown[a.id] = a.text if info.get("streamType") == "streaming" else ""
            else:
                shown[info["streamId"]] = a.text
        return [shown[k] for k in order if shown[k]]

    def updates(self) -> list[float]:
        streamed = [a for a in self.fake.activities if a.stream is not None]
        return [a.at for a in streamed if a.stream.get("streamType") == "streaming"]

    def was_refused(self) -> bool:
        return bool(self.fake.rejected)

    def untouched(self) -> bool:
        last: dict[str, str] = {}
        for a in self.fake.activities:
            if a.stream is None or a.stream.get("streamType") == "informative":
                continue
            key = a.stream.get("streamId") or a.id
            if not a.text.startswith(last.get(key, "")):
                return False
            last[key] = a.text
        return True

    def calls(self) -> int:
        return len(self.fake.activities) + len(self.fake.rejected)

    def length(self, text: str) -> int:
        return utf16_length(text)


class TimedOut(io.StringIO):
    """A terminal that notes when each piece was written."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, s: str) -> int:
        if s:
            self.times.append(time.monotonic())
        return super().write(s)


class ConsoleHarness:
    can_replace = False  # a terminal cannot take printed text back: the final text follows it

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.out = TimedOut()
        self.interval = INTERVAL
        self.limit = ConsoleSink.limit
        self.refusals = 0

    def reply(self) -> ConsoleReply:
        self.monkeypatch.setattr(ConsoleSink, "interval", self.interval)
        self.monkeypatch.setattr(ConsoleSink, "limit", self.limit)
        return ConsoleReply(self.out)

    def refuse(self, *, midway: bool = False) -> None:
        async def refused(sink, *args) -> None:
            self.refusals += 1
            raise Refused("the terminal refuses (test)")

        self.monkeypatch.setattr(console.ConsoleSink, "update" if midway else "open", refused)

    def visible(self) -> list[str]:
        text = self.out.getvalue()
        return [text[:-1] if text.endswith("\n") else text] if text else []

    def updates(self) -> list[float]:
        return self.out.times

    def was_refused(self) -> bool:
        return self.refusals > 0

    def untouched(self) -> bool:
        return True  # checked through `visible`: anything repeated would show there

    def calls(self) -> int:
        return len(self.out.times)

    def length(self, text: str) -> int:
        return len(text)


@pytest.fixture(params=["slack", "teams", "console"])
async def sink(request, monkeypatch):
    if request.param == "slack":
        async with FakeSlack(users={"U1": "Ann"}) as fake:
            yield SlackHarness(fake, monkeypatch)
    elif request.param == "teams":
        async with FakeConnector() as fake:
            harness = TeamsHarness(fake, monkeypatch)
            yield harness
            await harness.outbound.aclose()
    else:
        yield ConsoleHarness(monkeypatch)


async def stream_words(reply, words: list[str], *, pause: float = 0.0, final: str | None = None):
    s = reply.stream()
    for w in words:
        await s.append(w)
        if pause:
            await asyncio.sleep(pause)
    await s.finish("".join(words) if final is None else final)
    return s


def words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


WORDS = [f"word{i} " for i in range(12)]
TEXT = "".join(WORDS)


async def test_the_final_visible_text_is_the_final_text(sink):
    await stream_words(sink.reply(), WORDS, pause=0.01, final=TEXT.strip())
    assert sink.visible() == [TEXT.strip()]


async def test_deltas_are_coalesced_at_the_interval(sink):
    sink.interval = 0.2
    started = time.monotonic()
    await stream_words(sink.reply(), ["tok "] * 60, pause=0.01)
    elapsed = time.monotonic() - started
    updates = sink.updates()
    assert 2 <= len(updates) <= elapsed / 0.2 + 2, updates
    assert all(b - a >= 0.18 for a, b in itertools.pairwise(updates[:-1])), updates
    assert sink.visible() == ["tok " * 60]


async def test_a_final_text_that_extends_what_was_shown_adds_only_the_rest(sink):
    final = "The answer is 42.\n\n_(The reply was cut off.)_"
    await stream_words(sink.reply(), ["The answer ", "is 42."], pause=0.06, final=final)
    assert sink.visible() == [final]
    assert sink.untouched()


async def test_a_final_text_that_differs_replaces_what_was_shown(sink):
    await stream_words(sink.reply(), ["draft ", "text"], pause=0.06, final="entirely different")
    if sink.can_replace:
        assert sink.visible() == ["entirely different"]
    else:
        assert sink.visible() == ["draft text\nentirely different"]


async def test_an_empty_final_text_keeps_what_was_streamed(sink):
    await stream_words(sink.reply(), WORDS, pause=0.01, final="")
    assert sink.visible() == [TEXT]


async def test_finishing_twice_is_harmless(sink):
    s = await stream_words(sink.reply(), WORDS[:3])
    calls = sink.calls()
    await s.finish("something else")
    await s.append("more")
    assert sink.visible() == ["".join(WORDS[:3])]
    assert sink.calls() == calls


def long_reply() -> str:
    parts = []
    for i in range(12):
        if i % 5 == 2:
            parts.append("```python\n" + "\n".join(f"x{i}_{j} = {j}" for j in range(8)) + "\n```")
        else:
            parts.append(" ".join(f"p{i}w{j}" for j in range(12)))
    return "\n\n".join(parts)


async def test_a_long_reply_rolls_over_into_messages_each_within_the_limit(sink):
    if not sink.can_replace:
        pytest.skip("a terminal has no message size")
    sink.limit = 200
    text = long_reply()
    chunks = [text[i : i + 23] for i in range(0, len(text), 23)]
    await stream_words(sink.reply(), chunks, pause=0.005)
    pieces = sink.visible()
    assert len(pieces) > 3
    assert all(sink.length(p) <= 200 for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces)  # a cut code block is reopened
    assert squashed(pieces) == squashed([text])


def squashed(texts: list[str]) -> str:
    """The text without whitespace and fence lines (cuts move both)."""
    return "".join("".join(texts).split()).replace("```python", "").replace("```", "")


@pytest.mark.parametrize("midway", [False, True], ids=["at-once", "midway"])
async def test_a_refused_stream_falls_back_and_still_delivers_exactly_the_text(sink, midway):
    sink.refuse(midway=midway)
    await stream_words(sink.reply(), WORDS, pause=0.03, final=TEXT.strip())
    assert sink.was_refused()
    assert words(sink.visible()) == TEXT.split()
    if sink.can_replace and not midway:
        assert sink.visible() == [TEXT.strip()]


async def test_a_message_after_an_empty_stream_takes_its_place(sink):
    reply = sink.reply()
    reply.stream()
    await asyncio.sleep(0.01)
    await reply.send("Sorry, the model is unavailable.")
    assert sink.visible() == ["Sorry, the model is unavailable."]


async def test_a_message_after_a_broken_off_stream_follows_it(sink):
    reply = sink.reply()
    s = reply.stream()
    await s.append("partial answ")
    await asyncio.sleep(0.06)
    await reply.send("Sorry — something went wrong.")
    if sink.can_replace:
        assert sink.visible() == ["partial answ", "Sorry — something went wrong."]
    else:
        assert sink.visible() == ["partial answ\nSorry — something went wrong."]
