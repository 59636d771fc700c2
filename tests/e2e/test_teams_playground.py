"""Microsoft's own Teams client simulator talks to a running `threadwise serve`.

The Microsoft 365 Agents Playground (npm `@microsoft/m365agentsplayground`) plays Teams: it
sends real Teams activities (personal chat, group chat, a channel post with a mention entity) to
`/api/messages`, runs the connector the bot replies to (`serviceUrl` …/_connector) and checks the
streaming protocol as Teams does. It runs headless (`TEAMSAPPTESTER_BROWSER=none`) with the bot
in anonymous mode; its HTTP API stands in for the user and its WebSocket reports what the chat
shows. The package is installed once into a cache directory (`THREADWISE_PLAYGROUND_DIR`, default
`~/.cache/threadwise-playground`). Skipped only when npm/npx are not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.helpers import ServeProcess, free_port

pytestmark = [
    pytest.mark.playground,
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]

PACKAGE = "@microsoft/m365agentsplayground"
VERSION = "0.2.28"
CACHE = Path(
    os.environ.get("THREADWISE_PLAYGROUND_DIR") or Path.home() / ".cache" / "threadwise-playground"
)


def _installed_version() -> str | None:
    manifest = CACHE / "node_modules" / PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def playground_cli() -> Path:
    """The Playground's CLI script, installed with npm on first use."""
    if shutil.which("npx") is None or shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/npx/node are not installed: the Agents Playground test needs Node.js")
    if _installed_version() != VERSION:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
             f"{PACKAGE}@{VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"npm install {PACKAGE} failed:\n{done.stdout}\n{done.stderr}"
    cli = CACHE / "node_modules" / PACKAGE / "cli.js"
    assert cli.exists(), f"{cli} missing after npm install"
    return cli


class Playground:
    """A headless Agents Playground process and its conversation API / WebSocket."""

    def __init__(self, cli: Path, bot_endpoint: str) -> None:
        self.cli = cli
        self.endpoint = bot_endpoint
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self.events: list[dict] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.http: aiohttp.ClientSession | None = None
        self.config: dict = {}

    async def start(self) -> Playground:
        env = dict(os.environ, TEAMSAPPTESTER_BROWSER="none", BROWSER="none")
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(self.cli), "start",
            "-e", self.endpoint, "-c", "msteams", "-p", str(self.port), "--disable-telemetry",
            env=env, cwd=str(CACHE),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._tasks.append(asyncio.create_task(self._read_output()))
        self.http = aiohttp.ClientSession()
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError("Agents Playground exited:\n" + "\n".join(self.output))
            try:
                async with self.http.get(self.url + "/_debug/ping") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("Agents Playground did not start:\n" + "\n".join(self.output))
            await asyncio.sleep(0.2)
        async with self.http.get(self.url + "/_internal/v1/config") as resp:
            self.config = (await resp.json())["config"]
        ws = await self.http.ws_connect(
            self.url.replace("http", "ws") + "/_ws_conversation/v1/conversations/stream"
        )
        self._tasks.append(asyncio.create_task(self._read_ws(ws)))
        return self

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode("utf-8", "replace").rstrip())

    async def _read_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(frame.data))
                self._changed.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    @property
    def bot(self) -> dict:
        return self.config["bot"]

    async def say(self, conversation_id: str, text: str, *, user: str, mention_bot=False) -> dict:
        """A user posts in a conversation (as the Playground's UI would); its answer JSON."""
        body: dict = {"from": {"id": user}, "text": text, "textFormat": "plain"}
        if mention_bot:
            markup = f"<at>{self.bot['name']}</at>"
            body["text"] = f"{markup} {text}"
            body["mentions"] = [{"mentioned": {"id": self.bot["id"]}, "text": markup}]
        assert self.http is not None
        url = f"{self.url}/_conversation/v1/conversations/{conversation_id}/messages"
        async with self.http.post(url, json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
            return answer

    def bot_messages(self, conversation_id: str) -> list[dict]:
        """The bot's messages as the chat shows them now (streamed ones at their latest)."""
        shown: dict[str, dict] = {}
        for event in self.events:
            message = event.get("message") or {}
            if event.get("actionConversationId") != conversation_id:
                continue
            if (message.get("from") or {}).get("id") != self.bot["id"]:
                continue
            if event.get("action") in ("createMessage", "updateMessage"):
                shown[message["messageId"]] = message
        return list(shown.values())

    async def wait_for_reply(self, conversation_id: str, timeout: float = 30.0) -> dict:
        """The bot's finished reply: a plain message, or a stream's final message."""

        def finished() -> dict | None:
            for message in self.bot_messages(conversation_id):
                stream = message.get("streamEntity")
                if stream is None or stream.get("streamType") == "final":
                    return message
            return None

        async with asyncio.timeout(timeout):
            while (reply := finished()) is None:
                self._changed.clear()
                await self._changed.wait()
        return reply


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI(tokens_per_second=20) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def playground(playground_cli, model):
    env = {
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    }
    async with ServeProcess(env) as service:
        pg = Playground(playground_cli, service.url + "/api/messages")
        try:
            await pg.start()
            yield pg
        except BaseException:
            print("playground output:\n" + "\n".join(pg.output))
            print("service output:\n" + service.output())
            raise
        finally:
            await pg.stop()
        assert "Traceback" not in service.output(), service.output()


async def test_personal_chat_question_gets_the_models_reply_streamed(playground):
    question = f"What is a thread? ({uuid.uuid4().hex[:6]})"
    chat = playground.config["personalChat"]["id"]
    await playground.say(chat, question, user=playground.config["currentUser"]["id"])
    reply = await playground.wait_for_reply(chat)
    assert reply["text"] == f"Echo: {question}"  # the fake model echoes the user's message
    kinds = [
        (e.get("message") or {}).get("streamEntity", {}).get("streamType")
        for e in playground.events
        if e.get("actionConversationId") == chat and e.get("message")
    ]
    # The echo's first words open the stream (no informative update first); the final closes it.
    assert kinds[0] == "streaming" and kinds[-1] == "final"
    # Teams' AI label and feedback loop, as the Playground renders them.
    assert reply["aiEntity"]["additionalType"] == ["AIGeneratedContent"]
    assert reply["feedbackLoopEnabled"] is True


async def test_channel_mention_gets_the_models_reply_in_the_reply_chain(playground):
    question = f"summarise the release notes ({uuid.uuid4().hex[:6]})"
    team = playground.config["teams"][0]
    channel = team["channels"][0]["id"]
    user = team["members"][0]
    posted = await playground.say(channel, question, user=user, mention_bot=True)
    chain = posted["postConversationId"]
    assert chain.startswith(f"{channel};messageid=")
    reply = await playground.wait_for_reply(chain)
    # The mention was removed before the model saw the text, and the answer is one message.
    assert reply["text"] == f"Echo: {question}"
    assert "streamEntity" not in reply
    assert reply["aiEntity"]["additionalType"] == ["AIGeneratedContent"]
    assert not reply.get("feedbackLoopEnabled")  # Teams shows no feedback loop in channels


async def test_group_chat_mention_gets_the_models_reply(playground):
    question = f"agenda for Friday? ({uuid.uuid4().hex[:6]})"
    group = playground.config["groupChats"][0]
    posted = await playground.say(group["id"], question, user=group["members"][0], mention_bot=True)
    assert posted["messageId"]
    reply = await playground.wait_for_reply(group["id"])
    assert reply["text"] == f"Echo: {question}"
    assert reply["aiEntity"]["additionalType"] == ["AIGeneratedContent"]
    assert reply["feedbackLoopEnabled"] is True
