"""Attack 8's harness: fuzzing the HTTP surfaces of a running `threadwise serve` with hypothesis.

What tests/reliability/test_fuzz_*.py prove: the service never answers 500, never crashes, keeps
its memory bounded, refuses oversized bodies early with 413, and still answers a normal message
after the hostile bodies.

The tests are synchronous (hypothesis drives them); the fakes and the service live on an event
loop in a background thread (`World`; the module-scoped `world` fixture in
tests/reliability/conftest.py starts one per test module). Every URL a fuzzed payload can make
the service call (Teams `serviceUrl`, a slash command's `response_url`) is pinned to the
loopback fakes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import uuid

import aiohttp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.stack import USERS, Stack

EXAMPLES = int(os.environ.get("THREADWISE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OK = {200, 400}  # what any fuzzed request may get: handled, or refused as malformed

# -- the service on a background loop -----------------------------------------------------------


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


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "",
]
