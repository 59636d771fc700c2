"""What the bot posts to Slack never pings anyone (issue 12 §6).

The model writes what a prompt-injected document tells it to, and command answers quote what
people typed. Whatever they hold, nothing the bot sends — streamed (`chat.startStream` /
`appendStream` / `stopStream`), posted and edited, or answered to a slash command — carries
Slack's mention markup: `<!here>`, `<!channel>`, `<!everyone>`, `<!subteam^…>`, `<@U…>`, `<#C…>`,
nor bare `@here` / `@channel` / `@everyone`. The text still reads as written: `@here`, `@U123`,
`#general`, with an invisible word joiner after the `@`.
"""

from __future__ import annotations

import json
import re
import uuid

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from adapters.slack.api import make_client
from adapters.slack.mentions import MentionGuard, defuse_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.reply import SlackReplies, SlackReplyTarget, SlashReplyTarget
from bot.metrics import Metrics
from tests.support.fakes.fake_openai import Reply
from tests.support.fakes.fake_slack import (
    FakeSlack,
    app_mention,
    event_callback,
    form,
    message,
    new_ts,
    signed_headers,
    slash_command,
)
from tests.support.helpers import ServeProcess, delete_prefix
from tests.support.slack_e2e import ADMIN, SECRET, channel, service_env

WJ = "\u2060"  # word joiner: invisible, and no mention once it follows the `@`
# Anything Slack could read as a mention (bare names in any case; `&lt;` in case Markdown
# rendering decodes it; a Markdown link to `!here`).
LIVE = re.compile(r"<[!@#]|&lt;[!@#]|\]\([!@#]|@(?:here|channel|everyone)", re.IGNORECASE)

HOSTILE = (
    "Heads up <!channel> and <!here|here>, <!everyone>! Ask <@U0123ABCD> or <@W0456|ann> in "
    "<#C0999|general>; team <!subteam^S0111|@devs> too.\n\n"
    "Also @channel, @Here and @everyone, [click](!here), &lt;!here&gt; and "
    "<!date^1392734382^{date}|Feb 18>."
)
READS = (
    f"Heads up @{WJ}channel and @{WJ}here, @{WJ}everyone! Ask @{WJ}U0123ABCD or @{WJ}ann in "
    f"#general; team @{WJ}devs too.\n\n"
    f"Also @{WJ}channel, @{WJ}Here and @{WJ}everyone, [click]({WJ}!here), &lt;{WJ}!here&gt; "
    "and Feb 18."
)


def live(text: str) -> list[str]:
    return LIVE.findall(text)


# -- the text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("<!here>", f"@{WJ}here"),
        ("<!channel> <!everyone>", f"@{WJ}channel @{WJ}everyone"),
        ("<@U123>", f"@{WJ}U123"),
        ("<@W42|ann>", f"@{WJ}ann"),
        ("<#C1|general> <#C2>", "#general #C2"),
        ("<!subteam^S1|@devs> <!subteam^S2>", f"@{WJ}devs @{WJ}S2"),
        ("@here @CHANNEL @everyone", f"@{WJ}here @{WJ}CHANNEL @{WJ}everyone"),
        ("&lt;!here&gt;", f"&lt;{WJ}!here&gt;"),
        ("[all](!everyone)", f"[all]({WJ}!everyone)"),
        ("<!here unclosed", f"<{WJ}!here unclosed"),
        ("a < b, mail me@example.com, see <https://example.com>", None),
    ],
)
def test_mention_markup_becomes_text_that_reads_the_same(text, reads):
    out = defuse_mentions(text)
    assert out == (text if reads is None else reads)
    assert live(out) == []


def test_the_whole_hostile_reply_reads_as_written_without_live_mentions():
    assert defuse_mentions(HOSTILE) == READS


_PIECES = ["<", ">", "!", "@", "#", "|", "here", "Channel", "everyone", "ever", "&lt;", "&"]
_PIECES += ["l", "t;", "](", "]", "(", "subteam^S1", "U1", "a", " ", "\n", "<!here>", "<@U1|x>"]
_pieces = st.sampled_from(_PIECES)


@given(st.lists(_pieces, max_size=20).map("".join), st.lists(st.integers(1, 6), max_size=40))
def test_defused_text_has_no_mention_and_streaming_it_in_pieces_changes_nothing(text, cuts):
    whole = defuse_mentions(text)
    assert live(whole) == []
    assert defuse_mentions(whole) == whole
    guard, out, pos = MentionGuard(), [], 0
    for n in cuts:
        out.append(guard.feed(text[pos : pos + n]))
        pos += n
    out.append(guard.feed(text[pos:]))
    assert "".join(out) + guard.flush() == whole
    assert all(live(o) == [] for o in out)


def test_mrkdwn_never_turns_a_markdown_link_into_a_mention():
    out = to_mrkdwn("[everyone](!everyone) [him](@U1) [room](#C1) [ok](https://e.com)")
    assert "<!" not in out and "<@" not in out and "<#" not in out
    assert "<https://e.com|ok>" in out


# -- the reply paths, against the fake Web API ---------------------------------------------------

ROOT = "1700000100.000100"


@pytest.fixture
async def fake_slack():
    async with FakeSlack(users={"U1": "Ann"}) as fake:
        yield fake


def _target(slack: FakeSlack, thread_ts: str | None) -> SlackReplyTarget:
    replies = SlackReplies(
        make_client(slack.token, slack.api_url),
        Metrics(),
        stream_interval=0,
        stream_min_update=0,  # every cut goes out as its own update
        update_interval=0,
    )
    return SlackReplyTarget(
        replies,
        channel="C1",
        thread_ts=thread_ts,
        message_ts=ROOT,
        team_id="T0FAKE",
        user_id="U1",
    )


def sent_texts(slack: FakeSlack) -> list[str]:
    """Every text the bot handed Slack, call by call (params as JSON, response bodies)."""
    return [
        json.dumps(c.params, ensure_ascii=False)
        for c in slack.calls
        if c.method.startswith("chat.") or c.method == "response_url"
    ]


@pytest.mark.parametrize("thread_ts", [ROOT, None], ids=["streamed", "posted-and-edited"])
async def test_a_reply_written_a_character_at_a_time_never_carries_a_mention(fake_slack, thread_ts):
    reply = _target(fake_slack, thread_ts)
    s = reply.stream()
    for ch in HOSTILE:  # every possible cut, through the live updates
        await s.append(ch)
    await s.finish(HOSTILE)
    assert fake_slack.thread_texts("C1", thread_ts) == [READS]
    texts = sent_texts(fake_slack)
    assert len(texts) > 3
    assert [live(t) for t in texts if live(t)] == []


async def test_a_plain_send_and_a_broken_off_stream_never_carry_a_mention(fake_slack):
    reply = _target(fake_slack, ROOT)
    s = reply.stream()
    await s.append("half a reply to <@U0123")  # the model stops mid-mention
    await reply.send("Sorry <!here>, something went wrong.")
    assert fake_slack.thread_texts("C1", ROOT) == [
        f"half a reply to <{WJ}@U0123",
        f"Sorry @{WJ}here, something went wrong.",
    ]
    assert [live(t) for t in sent_texts(fake_slack) if live(t)] == []


class _Respond:
    """bolt's `respond`, posting to the fake's response_url."""

    def __init__(self, url: str):
        from slack_bolt.context.respond.async_respond import AsyncRespond

        self._respond = AsyncRespond(response_url=url)

    async def __call__(self, **kwargs):
        return await self._respond(**kwargs)


async def test_a_slash_command_answer_never_carries_a_mention(fake_slack):
    replies = SlackReplies(make_client(fake_slack.token, fake_slack.api_url), Metrics())
    slash = SlashReplyTarget(_Respond(fake_slack.response_url("r1")), replies)
    await slash.send(HOSTILE)
    [response] = fake_slack.responses
    assert live(response["text"]) == []
    assert f"@{WJ}here" in response["text"] and "#general" in response["text"]


# -- through `threadwise serve`, the fake model writing the mentions ----------------------------

serve_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack():
    async with FakeSlack(users={"U1": "Ann Admin", "U2": "Bob Stone"}) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, slack):  # `model`: tests/e2e/conftest.py
    prefix = f"tw-slack-safety-{uuid.uuid4().hex[:8]}:"
    async with ServeProcess(service_env(slack, model, redis_url, prefix)) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, slack):
    model.reset()
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)
    slack.reset()
    yield
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)


async def send(svc: ServeProcess, event: dict) -> int:
    body = json.dumps(event_callback(event))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            svc.url + "/slack/events", data=body, headers=signed_headers(body, SECRET)
        ) as r:
            return r.status


async def slash(svc: ServeProcess, slack: FakeSlack, text: str, rid: str, ch: str) -> str:
    fields = slash_command(text, response_url=slack.response_url(rid), user=ADMIN, channel=ch)
    body = form(fields)
    headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
    async with aiohttp.ClientSession() as http:
        async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
            assert r.status == 200
    await slack.wait_for(lambda s: any(r["rid"] == rid for r in s.responses))
    return "\n".join(r["text"] for r in slack.responses if r["rid"] == rid)


async def finished(slack: FakeSlack, ch: str, thread: str | None, n: int = 1) -> list[str]:
    await slack.wait_for(
        lambda s: len([m for m in s.thread(ch, thread) if not m.streaming]) >= n, 30
    )
    await slack.settle(0.3)
    return slack.thread_texts(ch, thread)


@pytest.mark.e2e
@serve_loop
async def test_model_text_streamed_into_a_thread_pings_no_one(service, model, slack, fresh):
    model.script(Reply(HOSTILE))
    model.configure(tokens_per_second=40)  # a few live appends, cut wherever the tokens fall
    ch, ts = channel(), new_ts()
    assert await send(service, app_mention("<@UBOT> summarise the doc", channel=ch, ts=ts)) == 200
    assert await finished(slack, ch, ts) == [READS]
    assert "chat.appendStream" in slack.methods()
    assert [live(t) for t in sent_texts(slack) if live(t)] == []


@pytest.mark.e2e
@serve_loop
async def test_model_text_posted_and_edited_pings_no_one(service, model, slack, fresh):
    model.script(Reply(HOSTILE))
    model.configure(tokens_per_second=40)
    slack.fail("chat.startStream", error="not_allowed", times=None)
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> summarise the doc", channel=ch, ts=ts))
    await slack.wait_for(lambda s: s.thread_texts(ch, ts) == [READS], 30)
    await slack.settle(0.5)
    assert {"chat.postMessage", "chat.update"} <= set(slack.methods())
    assert [live(t) for t in sent_texts(slack) if live(t)] == []


@pytest.mark.e2e
@serve_loop
async def test_prompt_commands_echoing_user_text_ping_no_one(service, model, slack, fresh):
    ch = channel()
    typed = "prompt set Greet <!here> and <@U2>, cc <!subteam^S1|@devs> &lt;!channel&gt; @everyone"
    answers = [await slash(service, slack, typed, "set", ch)]
    answers.append(await slash(service, slack, "prompt", "show", ch))
    answers.append(await slash(service, slack, "prompt history", "history", ch))
    assert f"@{WJ}here" in answers[1] and "Bob Stone" in answers[1]
    # The same in a thread: `!prompt` answered with chat.postMessage.
    ts = new_ts()
    await send(service, message("<@UBOT> !prompt", channel=ch, ts=ts))
    [shown] = await finished(slack, ch, ts)
    assert f"@{WJ}here" in shown and f"@{WJ}everyone" in shown
    assert [live(t) for t in [*answers, *sent_texts(slack)] if live(t)] == []
    assert model.chat_requests == []
