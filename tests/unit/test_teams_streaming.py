"""Streaming in 1:1 chats follows Teams' protocol, and degrades gracefully when Teams says no.

first `typing` (streamSequence 1: the model's first words, or an informative update while the
model is silent) → `typing` chunks holding the full text so far, with increasing streamSequence
and the streamId Teams returned → final `message` (streamType final).
The fake connector enforces the protocol the way Teams does (prefix-extending text, increasing
sequence, no updates after final, no streaming outside 1:1 chats).
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import posting
from adapters.teams import stream as teams_stream
from adapters.teams.connector import Outbound
from adapters.teams.stream import TeamsSink
from adapters.text import utf16_length
from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fixtures.teams.harness import RecordingHandler, load, teams_server

WORDS = ["Processes ", "have ", "their ", "own ", "memory; ", "threads ", "share ", "it."]
FULL = "".join(WORDS)


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(Outbound, "backoff", 0.01)
    monkeypatch.setattr(TeamsSink, "interval", 0.05)
    monkeypatch.setattr(TeamsSink, "open_wait", 0.05)


@pytest.fixture
async def connector():
    async with FakeConnector() as fake:
        yield fake


def streamer(words=WORDS, *, pause=0.03, final=None):
    async def model(msg, reply):
        await reply.typing()
        stream = reply.stream()
        for word in words:
            await asyncio.sleep(pause)
            await stream.append(word)
        await stream.finish(final if final is not None else "".join(words))

    return model


async def run(connector, script, fixture="personal_message"):
    handler = RecordingHandler(script)
    activity = load(fixture, service_url=connector.url)
    async with teams_server(handler) as (client, _):
        resp = await client.post("/api/messages", json=activity)
        assert resp.status == 200
        await handler.drain()
    return activity


def stream_posts(connector):
    return [a for a in connector.activities if a.stream is not None]


async def test_personal_reply_opens_the_stream_with_the_first_words_then_chunks_then_final(
    connector,
):
    activity = await run(connector, streamer())
    posts = stream_posts(connector)
    first, *chunks, final = posts
    assert first.type == "typing"
    assert first.stream["streamType"] == "streaming"
    assert first.stream["streamSequence"] == 1
    assert "streamId" not in first.stream
    assert first.text == WORDS[0]  # no informative update holds the first words back
    stream_id = first.id
    assert chunks, "expected at least one streamed chunk"
    sequences = [c.stream["streamSequence"] for c in chunks]
    assert sequences == sorted(set(sequences)) and sequences[0] == 2
    for chunk in chunks:
        assert chunk.type == "typing"
        assert chunk.stream["streamType"] == "streaming"
        assert chunk.stream["streamId"] == stream_id
        assert FULL.startswith(chunk.text) and chunk.text  # the full text so far, not a delta
    assert len(chunks[-1].text) >= len(chunks[0].text) > len(first.text)
    assert final.type == "message"
    assert final.stream["streamType"] == "final"
    assert final.stream["streamId"] == stream_id
    assert "streamSequence" not in final.stream
    assert final.text == FULL
    assert final.activity["textFormat"] == "markdown"
    assert all(p.conversation_id == activity["conversation"]["id"] for p in posts)
    assert connector.rejected == []
    # Exactly one visible message: the stream's final one.
    assert len(connector.messages()) == 1


async def test_model_silent_past_open_wait_gets_an_informative_update_first(connector):
    await run(connector, streamer(pause=0.2))  # first word well after open_wait (0.05 s)
    first, second, *_ = stream_posts(connector)
    assert first.type == "typing" and first.stream["streamType"] == "informative"
    assert first.stream["streamSequence"] == 1 and first.text
    assert second.stream["streamType"] == "streaming" and second.stream["streamSequence"] == 2
    assert second.stream["streamId"] == first.id
    assert stream_posts(connector)[-1].text == FULL
    assert connector.rejected == []


async def test_reply_finished_before_the_stream_opens_is_one_plain_message(connector, monkeypatch):
    monkeypatch.setattr(TeamsSink, "open_wait", 1.0)

    async def whole_at_once(msg, reply):  # e.g. a model that does not stream
        stream = reply.stream()
        await asyncio.sleep(0.1)
        await stream.finish(FULL)

    await run(connector, whole_at_once)
    assert stream_posts(connector) == []
    assert [m.text for m in connector.messages()] == [FULL]


async def test_stream_updates_are_at_least_a_second_apart(connector, monkeypatch):
    monkeypatch.setattr(TeamsSink, "interval", 1.0)  # Teams' real pace
    words = [f"w{i} " for i in range(14)]
    await run(connector, streamer(words, pause=0.15))
    posts = stream_posts(connector)
    assert len(posts) >= 4  # first words, ≥2 chunks, final
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.95, gaps
    assert posts[-1].text == "".join(words)


async def test_final_text_may_add_to_what_was_streamed(connector):
    await run(connector, streamer(final=FULL + "\n\n_(cut off: the reply hit its length limit)_"))
    final = stream_posts(connector)[-1]
    assert final.stream["streamType"] == "final"
    assert final.text.endswith("length limit)_")


async def test_content_stream_not_allowed_ends_the_stream_and_posts_the_rest(connector):
    # The user presses Stop after the first chunk: Teams refuses every later update.
    connector.fail(
        403, code="ContentStreamNotAllowed", count=100, match={"streamType": "streaming"}
    )
    words = ["First part. ", "Second part. ", "Third part."]

    async def model(msg, reply):
        stream = reply.stream()
        await asyncio.sleep(0.1)  # the model is silent: the informative update goes out
        await stream.append(words[0])
        await asyncio.sleep(0.2)  # a chunk is attempted and refused
        await stream.append(words[1])
        await stream.append(words[2])
        await stream.finish("".join(words))

    await run(connector, model)
    refused = [a for status, a in connector.rejected if status == 403]
    assert len(refused) == 1, "no further updates after the stream was refused"
    plain = [m for m in connector.messages() if m.stream is None]
    assert [m.text for m in plain] == ["".join(words)]  # nothing was shown: all of it


async def test_content_stream_not_allowed_after_a_chunk_posts_only_the_unseen_rest(connector):
    async def model(msg, reply):
        stream = reply.stream()
        await stream.append("Shown part. ")
        await connector.wait_for(
            lambda acts: any((a.stream or {}).get("streamType") == "streaming" for a in acts)
        )
        connector.fail(
            403, code="ContentStreamNotAllowed", count=100, match={"streamType": "streaming"}
        )
        await stream.append("Unseen part.")
        await asyncio.sleep(0.2)
        await stream.finish("Shown part. Unseen part.")

    await run(connector, model)
    plain = [m for m in connector.messages() if m.stream is None]
    assert [m.text for m in plain] == ["Unseen part."]


async def test_throttled_stream_update_is_retried(connector):
    connector.fail(429, retry_after=0.1, match={"streamType": "streaming"})
    await run(connector, streamer())
    assert [status for status, _ in connector.rejected] == [429]
    final = stream_posts(connector)[-1]
    assert final.stream["streamType"] == "final" and final.text == FULL


async def test_stream_refused_outright_falls_back_to_one_message(connector):
    connector.fail(400, code="BadArgument", match={"streamType": "streaming"})
    await run(connector, streamer())
    assert stream_posts(connector) == []
    assert [m.text for m in connector.messages()] == [FULL]


async def test_stream_is_finalized_before_teams_two_minute_cap_and_continues(
    connector, monkeypatch
):
    monkeypatch.setattr(TeamsSink, "max_seconds", 0.4)
    words = [f"part{i} " for i in range(12)]
    await run(connector, streamer(words, pause=0.06))
    posts = stream_posts(connector)
    final = [p for p in posts if p.stream["streamType"] == "final"]
    assert len(final) == 1
    # Finalized at the cap, while words were still coming (not at the end of the reply): the
    # words after it continue in a normal message — an ordering, whatever the machine's pace.
    plain = [m for m in connector.messages() if m.stream is None]
    assert plain, "the rest continues in a normal message"
    assert final[0].text + "".join(m.text for m in plain) == "".join(words)
    assert final[0].text + plain[0].text == "".join(words)
    assert connector.rejected == []


async def test_cut_inside_a_code_block_keeps_both_halves_rendering_as_code(connector, monkeypatch):
    monkeypatch.setattr(TeamsSink, "max_seconds", 0.3)
    words = ["Example:\n\n```python\n"] + [f"print({i})\n" for i in range(10)] + ["```\n\nDone."]
    await run(connector, streamer(words, pause=0.05))
    final = next(p for p in stream_posts(connector) if p.stream["streamType"] == "final")
    rest = [m.text for m in connector.messages() if m.stream is None]
    assert final.text.count("```") % 2 == 0
    assert rest and rest[0].startswith("```python\n")
    assert rest[0].count("```") % 2 == 0


async def test_reply_longer_than_one_message_streams_then_continues(connector, monkeypatch):
    monkeypatch.setattr(teams_stream, "MAX_MESSAGE_LENGTH", 100)  # UTF-16 code units: 200 bytes
    words = [f"Paragraph {i} has a few words in it.\n\n" for i in range(8)]
    full = "".join(words)
    await run(connector, streamer(words, pause=0.03, final=full.rstrip()))
    stream_texts = [p.text for p in stream_posts(connector)]
    finals = [p for p in stream_posts(connector) if p.stream["streamType"] == "final"]
    plain = [m.text for m in connector.messages() if m.stream is None]
    assert len(finals) == 1
    assert all(len(t.encode("utf-16-le")) <= 200 for t in stream_texts + plain)
    assert plain
    assert "".join(finals[0].text.split()) + "".join("".join(plain).split()) == "".join(
        full.split()
    )


async def test_apology_after_a_failed_model_call_closes_the_open_stream(connector):
    async def failing_model(msg, reply):
        await reply.typing()
        reply.stream()
        await asyncio.sleep(0.1)  # informative update is showing
        await reply.send("Sorry, the model is unavailable right now.")

    await run(connector, failing_model)
    posts = stream_posts(connector)
    assert [p.stream["streamType"] for p in posts] == ["informative", "final"]
    assert posts[-1].text == "Sorry, the model is unavailable right now."
    assert len(connector.messages()) == 1


async def test_stream_in_a_channel_is_never_attempted(connector):
    await run(connector, streamer(), fixture="channel_mention")
    assert stream_posts(connector) == []
    assert [m.text for m in connector.messages()] == [FULL]


async def test_connector_outage_mid_stream_still_delivers_the_answer(connector):
    async def model(msg, reply):
        stream = reply.stream()
        await stream.append("Half ")
        await connector.wait_for(
            lambda acts: any((a.stream or {}).get("streamType") == "streaming" for a in acts)
        )
        connector.fail(502, count=2 * (1 + Outbound.max_error_retries))
        await stream.append("and the rest.")
        await asyncio.sleep(0.3)
        await stream.finish("Half and the rest.")

    await run(connector, model)
    delivered = "".join(
        m.text for m in connector.messages() if (m.stream or {}).get("streamType") != "final"
    )
    finals = [m for m in connector.messages() if (m.stream or {}).get("streamType") == "final"]
    assert (finals and finals[0].text == "Half and the rest.") or delivered.endswith("the rest.")


async def test_long_reply_finished_before_the_stream_opens_is_split_into_messages(
    connector, monkeypatch
):
    monkeypatch.setattr(teams_stream, "MAX_MESSAGE_LENGTH", 150)  # 300 bytes
    text = "Intro line.\n\n```sh\n" + "".join(f"echo {i}\n" for i in range(40)) + "```\n\nDone."

    async def model(msg, reply):
        stream = reply.stream()
        await stream.finish(text)  # the whole answer at once

    await run(connector, model)
    assert stream_posts(connector) == []
    parts = [m.text for m in connector.messages()]
    assert len(parts) > 1
    for body in parts:
        assert len(body.encode("utf-16-le")) <= 300
        assert body.count("```") % 2 == 0
    assert parts[-1].endswith("Done.")
    assert "".join("".join(parts).split()).replace("```sh", "").replace("```", "") == "".join(
        text.split()
    ).replace("```sh", "").replace("```", "")


@given(
    text=st.text(alphabet=st.sampled_from(list("ab c\n🚀é")), max_size=300),
    limit=st.integers(min_value=4, max_value=400),
)
def test_fitting_prefix_is_a_fitting_start_and_the_remainder_completes_it(text, limit):
    head = posting.fitting_prefix(text, limit, utf16_length)
    assert text.startswith(head)
    assert utf16_length(head) <= limit
    if text and utf16_length(text) > limit:
        assert head or utf16_length(text[0]) > limit
    rest = posting.remainder(text, head) if head else text
    assert "".join((head + rest).split()) == "".join(text.split())
