"""Attack 8: fuzzing the HTTP surfaces of a running `threadwise serve` with hypothesis.

Random and mutated Slack payloads carrying valid signatures, random Teams activities carrying
valid Bot Framework tokens (for their own `serviceUrl`), hostile raw bodies (huge, gzip bombs,
deep JSON, wrong content types, bytes that are not UTF-8, odd methods and headers). The service
must never answer 500, never crash, keep its memory bounded, refuse oversized bodies early with
413, and still answer a normal message afterwards.

The tests are synchronous (hypothesis drives them); the fakes and the service live on an event
loop in a background thread. Every URL a fuzzed payload can make the service call (Teams
`serviceUrl`, a slash command's `response_url`) is pinned to the loopback fakes.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import os
import threading
import time
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack, event_callback, signed_headers, slash_command
from tests.support.fixtures.teams.harness import APP_ID, load
from tests.support.stack import (
    SECRET,
    USERS,
    Stack,
    figure,
    mention,
    rss_bytes,
    slack_thread,
    ts,
)

pytestmark = pytest.mark.security

EXAMPLES = int(os.environ.get("THREADWISE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OK = {200, 400}  # what any fuzzed request may get: handled, or refused as malformed
# A fuzzed activity may also name a serviceUrl its token does not vouch for (401) or a channel
# other than Teams (403).
TEAMS_OK = OK | {401, 403}
MiB = 1024 * 1024


class World:
    """The fakes and the service on a background event loop; `run()` calls into it."""

    def __init__(self, redis_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.redis_url = redis_url
        self.sent = 0
        self.checked = 0  # log lines already checked for unhandled errors

    def run(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.model = await FakeOpenAI().start()
        self.slack = await FakeSlack(users=USERS).start()
        self.connector = FakeConnector()
        await self.connector.start()
        prefix = f"tw-fuzz-{uuid.uuid4().hex[:8]}:"
        self.stack = Stack(self.model, self.slack, self.connector, self.redis_url, prefix)
        self.svc = await self.stack.start()
        self.http = aiohttp.ClientSession()

    async def _stop(self) -> None:
        await self.http.close()
        await self.stack.close()
        await self.connector.stop()
        await self.slack.stop()
        await self.model.stop()

    def start(self) -> World:
        self.run(self._start())
        return self

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    async def _post(self, path: str, body: bytes, headers: dict[str, str], method: str) -> int:
        if path == "/api/messages" and "Authorization" not in headers:
            # Authenticated, so the body itself is what gets tested (as Azure Bot Service sends).
            headers = {**headers, "Authorization": self.connector.authorization(APP_ID)}
        try:
            async with self.http.request(
                method, self.svc.url + path, data=body, headers=headers
            ) as r:
                await r.read()
                return r.status
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            return -1  # the server hung up on a body it refused (only allowed for huge ones)

    def post(self, path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> int:
        self.sent += 1
        return self.run(self._post(path, body, headers, method))

    def alive(self) -> None:
        assert self.svc.proc is not None and self.svc.proc.returncode is None, "serve crashed"
        assert self.post("/healthz", b"", {}, "GET") == 200


@pytest.fixture(scope="module")
def world(redis_url):
    w = World(redis_url).start()
    try:
        yield w
        figure("requests fuzzed", w.sent)
    finally:
        w.stop()


def no_500s(world: World) -> None:
    """No unhandled error since the last check (aiohttp's 500 page, or a turn that crashed)."""
    lines = world.svc.lines[world.checked :]
    world.checked += len(lines)
    bad = [
        (r.get("msg"), (r.get("exc") or "").splitlines()[-1:])
        for r in log_records_of(lines)
        if (r.get("logger") == "aiohttp.server" or r.get("msg") == "turn failed")
        # aiohttp's HTTP parser refusing a request (a 400, e.g. a header over 8 KB) is logged
        # by aiohttp itself with a traceback; the status is checked where it is sent.
        and "aiohttp.http_exceptions." not in (r.get("exc") or "")
    ]
    assert not bad, f"unhandled errors in the service: {bad[:3]}"


def log_records_of(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


# -- strategies --------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["<@UBOT>", "<@UBOT> hi", "!prompt set x", "U1", "C1", "1700000000.0001"])
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=15,
)
SLACK_KEYS = [
    "enterprise",
    "enterprise_id",
    "is_enterprise_install",
    "user_id",
    "view",
    "container",
    "previous_message",
    "context_team_id",
    "type",
    "event",
    "text",
    "user",
    "channel",
    "ts",
    "thread_ts",
    "subtype",
    "channel_type",
    "bot_id",
    "team",
    "team_id",
    "event_id",
    "command",
    "challenge",
    "authorizations",
    "blocks",
    "files",
    "message",
    "hidden",
    "user_team",
    "api_app_id",
]
EVENTS = json.loads((Path(__file__).parents[1] / "support/fixtures/slack/events.json").read_text())
EVENTS.pop("_comment")


@st.composite
def mutated(draw, base: dict, keys: list[str]):
    """`base` with some keys removed, replaced by any JSON value, or added (nested too)."""
    out = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 4))):
        target = out
        if "event" in out and isinstance(out["event"], dict) and draw(st.booleans()):
            target = out["event"]
        action = draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop" and target:
            target.pop(draw(st.sampled_from(sorted(target))), None)
        elif action == "set" and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(json_value)
        else:
            target[draw(st.sampled_from(keys))] = draw(json_value)
    return out


TEXTS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200
) | st.sampled_from(
    [
        "<@UBOT> " + "\u200b" * 50,
        "<@UBOT> \x00\x01\x1b[31mred\x7f",
        "<@UBOT> \u202eevil\u202c",
        "<@UBOT> <@U1|x> <#C1|c> <!here> <https://e.test|l> &lt;&gt;&amp;",
        "<@UBOT> <<<<@>>>> <@> <#> <!subteam^> <mailto:> ",
        "<@UBOT> !prompt set --global pwned",
    ]
)


@st.composite
def slack_event_payload(draw):
    event = copy.deepcopy(draw(st.sampled_from(list(EVENTS.values()))))
    event["ts"] = ts()  # a fresh post, so the service really handles it
    event["channel"] = draw(st.sampled_from(["CFUZZ", "DFUZZ", "GFUZZ", event.get("channel")]))
    if draw(st.booleans()):
        event["text"] = draw(TEXTS)
    body = event_callback(event, event_id="Ev" + uuid.uuid4().hex[:10])
    return draw(mutated(body, SLACK_KEYS))


def form_payload(world: World):
    @st.composite
    def build(draw):
        fields = slash_command(draw(TEXTS), response_url=world.slack.response_url("fuzz"))
        fields = draw(mutated(fields, ["command", "text", "user_id", "channel_id", "team_id"]))
        fields["response_url"] = world.slack.response_url("fuzz")  # loopback only
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}

    return build()


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "",
]


# -- Slack -------------------------------------------------------------------------------------


def test_signed_mutated_slack_events_never_500(world):
    @FUZZ
    @given(payload=slack_event_payload(), ctype=st.sampled_from(CONTENT_TYPES))
    def run(payload, ctype):
        body = json.dumps(payload).encode()
        status = world.post("/slack/events", body, signed_headers(body, SECRET, content_type=ctype))
        assert status in OK, (status, payload)

    run()
    world.alive()
    no_500s(world)


def test_signed_slash_commands_and_forms_never_500(world):
    @FUZZ
    @given(fields=form_payload(world), as_payload=st.booleans())
    def run(fields, as_payload):
        body = urlencode({"payload": json.dumps(fields)} if as_payload else fields).encode()
        headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
        status = world.post("/slack/events", body, headers)
        assert status in OK, (status, fields)

    run()
    world.alive()
    no_500s(world)


def test_signed_random_bytes_and_json_values_never_500(world):
    @FUZZ
    @given(
        body=st.binary(max_size=300)
        | json_value.map(lambda v: json.dumps(v).encode())
        | st.text(max_size=100).map(lambda t: t.encode("utf-16")),
        ctype=st.sampled_from(CONTENT_TYPES),
    )
    def run(body, ctype):
        status = world.post("/slack/events", body, signed_headers(body, SECRET, content_type=ctype))
        assert status in OK, (status, body)

    run()
    world.alive()
    no_500s(world)


# -- Teams -------------------------------------------------------------------------------------

TEAMS_FIXTURES = [
    "personal_message",
    "group_chat_mention",
    "channel_mention",
    "conversation_update_bot_added",
    "conversation_update_team_install",
]
TEAMS_KEYS = [
    "type",
    "id",
    "text",
    "textFormat",
    "conversation",
    "from",
    "recipient",
    "entities",
    "channelData",
    "channelId",
    "serviceUrl",
    "membersAdded",
    "membersRemoved",
    "attachments",
    "value",
    "name",
    "replyToId",
    "locale",
    "timestamp",
]


def teams_activity(world: World):
    safe_urls = [world.connector.url, "http://127.0.0.1:9/", "not a url", "", None, 42]

    @st.composite
    def build(draw):
        act = load(draw(st.sampled_from(TEAMS_FIXTURES)))
        act["id"] = str(uuid.uuid4().int % 10**13)
        act["conversation"]["id"] = f"fuzz-{uuid.uuid4().hex[:8]}"
        if draw(st.booleans()):
            act["text"] = draw(TEXTS.map(lambda t: t.replace("<@UBOT>", "<at>Threadwise</at>")))
        if draw(st.booleans()):
            act["type"] = draw(
                st.sampled_from(["message", "invoke", "event", "typing", "messageReaction", ""])
                | st.text(max_size=10)
            )
        act = draw(mutated(act, TEAMS_KEYS))
        # Replies go only where the test's fakes listen (or nowhere at all).
        act["serviceUrl"] = draw(st.sampled_from(safe_urls))
        return act

    return build()


def test_random_teams_activities_never_500(world):
    @FUZZ
    @given(act=teams_activity(world), ctype=st.sampled_from(CONTENT_TYPES))
    def run(act, ctype):
        body = json.dumps(act).encode()
        headers = {"Content-Type": ctype} if ctype else {}
        url = act.get("serviceUrl")
        claim = url if isinstance(url, str) and url else None
        headers["Authorization"] = world.connector.authorization(APP_ID, claim)
        status = world.post("/api/messages", body, headers)
        assert status in TEAMS_OK, (status, act)

    run()
    world.alive()
    no_500s(world)


# -- raw hostile bodies --------------------------------------------------------------------------


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def deep_in_event(n: int) -> bytes:
    inner = b'{"a":' * n + b"1" + b"}" * n
    return (
        b'{"type":"event_callback","event":{"type":"message","text":"x","blocks":' + inner + b"}}"
    )


HOSTILE = [
    ("deep array", deep(100_000), "application/json", {400}),
    ("deep object in an event", deep_in_event(50_000), "application/json", {400}),
    ("moderately deep", deep(900), "application/json", {400}),
    ("moderately deep in an event", deep_in_event(900), "application/json", {200, 400}),
    ("not UTF-8", b"\xff\xfe\xfa{\x80}", "application/json", {400}),
    ("UTF-16 JSON", '{"type":"event_callback"}'.encode("utf-16"), "application/json", {400}),
    ("BOM then JSON", b'\xef\xbb\xbf{"type":"url_verification","challenge":"c"}', "", {200, 400}),
    ("NaN and Infinity", b'{"type":"event_callback","event":NaN,"x":Infinity}', "", {400}),
    ("JSON null", b"null", "application/json", {400}),
    ("JSON number", b"1e999999", "application/json", {400}),
    ("huge integer", b'{"type":"event_callback","event":' + b"9" * 5000 + b"}", "", {400}),
    ("empty", b"", "application/json", {400}),
    ("form with broken payload", b"payload=%7B%7B", "application/x-www-form-urlencoded", {400}),
    ("form, not UTF-8", b"command=%FF%FE&text=x", "application/x-www-form-urlencoded", {200, 400}),
    ("XML", b"<?xml version='1.0'?><event/>", "application/xml", {400}),
    (
        "multipart",
        b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xyz--",
        "multipart/form-data; boundary=xyz",
        {400},
    ),
    ("nul bytes", b'{"type":"event_callback","event":{"type":"message\x00"}}', "", {200, 400}),
]


@pytest.mark.parametrize("name,body,ctype,allowed", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_are_refused_not_500(world, name, body, ctype, allowed):
    headers = signed_headers(body, SECRET, content_type=ctype)
    assert world.post("/slack/events", body, headers) in allowed
    teams_headers = {"Content-Type": ctype} if ctype else {}
    assert world.post("/api/messages", body, teams_headers) in allowed
    figure("attacks tried (hostile bodies)", 2)


def test_huge_bodies_are_refused_early_with_413(world):
    started = time.monotonic()
    for size in (MiB + 1, 8 * MiB, 64 * MiB):
        body = b'{"type":"event_callback","event":{"type":"message","text":"' + b"a" * size + b'"}}'
        for path, headers in (
            ("/slack/events", signed_headers(body, SECRET)),
            ("/api/messages", {"Content-Type": "application/json"}),
            ("/slack/events", {"Content-Type": "application/json"}),  # unsigned: 413 or 401
        ):
            status = world.post(path, body, headers)
            assert status in (413, -1) or (status == 401 and "X-Slack-Signature" not in headers)
            figure("attacks tried (huge bodies)")
    # Compressed bombs: tiny on the wire, enormous when decoded.
    bomb = gzip.compress(b"\x20" * (200 * MiB))
    deflate_bomb = zlib.compress(b"\x20" * (200 * MiB))
    for encoding, payload in (("gzip", bomb), ("deflate", deflate_bomb)):
        for path in ("/slack/events", "/api/messages"):
            headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
            if path == "/slack/events":
                headers.update(signed_headers(payload, SECRET))
                headers["Content-Encoding"] = encoding
            assert world.post(path, payload, headers) in (400, 401, 413)
            figure("attacks tried (compression bombs)")
    assert time.monotonic() - started < 30, "refusing big bodies took too long"
    world.alive()


def test_wrong_methods_and_headers_are_not_500(world):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for path in ("/slack/events", "/api/messages"):
            assert world.post(path, b"{}", {}, method) in (405,)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert world.post(path, b"{}", {}) == 405
    big_header = {"X-Junk": "a" * 20_000}
    assert world.post("/api/messages", b"{}", big_header) in (400, 431, -1)
    many = {f"X-H{i}": "v" for i in range(300)}
    assert world.post("/api/messages", b"{}", many) in (400, 431, -1)
    weird = {"Content-Type": "application/json; charset=\u00ff", "X-Slack-Signature": "v0=\u00e9"}
    assert world.post("/slack/events", b"{}", weird) in (400, 401)
    figure("attacks tried (methods and headers)", 14)
    world.alive()
    no_500s(world)


# -- memory --------------------------------------------------------------------------------------


def test_memory_stays_bounded_under_big_and_refused_bodies(world):
    ignored = {"type": "reaction_added", "x": "a" * (MiB - 1000)}
    near_limit = json.dumps(event_callback(ignored)).encode()
    assert len(near_limit) < MiB
    teams_big = json.dumps(
        {
            "type": "typing",
            "channelId": "msteams",
            "conversation": {"id": "x"},
            "serviceUrl": world.connector.url,
            "text": "b" * (MiB - 300),
        }
    ).encode()
    too_big = b"{" + b" " * (4 * MiB) + b"}"

    json_type = {"Content-Type": "application/json"}

    def burst() -> None:
        for _ in range(20):
            signed = signed_headers(near_limit, SECRET)
            assert world.post("/slack/events", near_limit, signed) == 200
            assert world.post("/api/messages", teams_big, json_type) == 200
            assert world.post("/api/messages", too_big, {}) in (413, -1)

    for _ in range(3):  # warm up: allocator arenas and caches settle after a few rounds
        burst()
    before = rss_bytes(world.svc)
    for _ in range(3):
        burst()
    grown = rss_bytes(world.svc) - before
    figure("requests fuzzed (memory check)", 360)
    print(f"\nRSS {before / MiB:.0f} MiB, grew {grown / MiB:.1f} MiB over 180 more big requests")
    assert grown < 32 * MiB, f"memory grew {grown / MiB:.0f} MiB"


def test_service_still_answers_after_the_fuzzing(world):
    ch, at = "C" + uuid.uuid4().hex[:9].upper(), ts()
    body = json.dumps(event_callback(mention("<@UBOT> still there?", ch=ch, at=at)))
    assert world.post("/slack/events", body.encode(), signed_headers(body, SECRET)) == 200
    texts = world.run(slack_thread(world.slack, ch, at, 1))
    assert texts == ["Echo: still there?"]
    world.alive()
    no_500s(world)
