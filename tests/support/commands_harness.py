"""The admin-command tests' harness: places, messages as adapters hand them over, a service.

Admin commands (docs/spec.md §5, issue 3) are proved through the responder as adapters drive it.
Every test builds the real service (`build_service`) against the fake model and runs against
both stores — the shared Redis and the in-process store — unless it is about sharing Redis.
The test modules import the fixtures (`fake`, `store_kind`, `make_service`, `service`) by name.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from bot.app import Service, build_service
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, channel_scope, workspace_scope
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI

SYSTEM_PROMPT = "You are the default Threadwise prompt."
ADMINS = "slack:UADMIN,teams:aad-admin"


class RecordingStream:
    def __init__(self, reply: RecordingReply) -> None:
        self.reply = reply
        self.appended: list[str] = []

    async def append(self, text: str) -> None:
        self.appended.append(text)

    async def finish(self, text: str, *, answer: object = None) -> None:
        self.reply.streamed.append(text)


class RecordingReply:
    """A ReplyTarget that keeps what was posted: `send` texts and finished streams."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.streamed: list[str] = []
        self.typed = 0

    async def typing(self) -> None:
        self.typed += 1

    async def send(self, text: str) -> None:
        self.sent.append(text)

    def stream(self) -> RecordingStream:
        return RecordingStream(self)

    @property
    def text(self) -> str:
        return "\n".join(self.sent + self.streamed)


@dataclass(frozen=True)
class Place:
    platform: str
    workspace: str
    channel: str
    thread: str | None
    is_dm: bool
    admin: str  # a user id in BOT_ADMINS (on the console: anyone)
    user: str  # a user id not in BOT_ADMINS

    @property
    def channel_scope(self) -> str:
        return channel_scope(self.platform, self.workspace, self.channel)

    @property
    def workspace_scope(self) -> str:
        return workspace_scope(self.platform, self.workspace)

    def scope(self, option: str) -> str:
        return {"": self.channel_scope, "--workspace": self.workspace_scope, "--global": GLOBAL}[
            option
        ]


PLACES = {
    "slack-channel": Place("slack", "T1", "C1", "1700000000.000100", False, "UADMIN", "UUSER"),
    "slack-dm": Place("slack", "T1", "D1", None, True, "UADMIN", "UUSER"),
    "teams-channel": Place(
        "teams",
        "tenant-1",
        "19:general@thread.tacv2;messageid=1700000000001",
        None,
        False,
        "aad-admin",
        "aad-user",
    ),
    "console": Place("console", "local", "default", None, True, "alice", "alice"),
}
SLACK, DM, TEAMS, CONSOLE = (PLACES[k] for k in PLACES)
WITH_NON_ADMINS = [k for k in PLACES if k != "console"]  # the console user is always an admin
WHO = [pytest.param(w, True, id=f"{w}-admin") for w in PLACES] + [
    pytest.param(w, False, id=f"{w}-non-admin") for w in WITH_NON_ADMINS
]
OPTIONS = ["", "--workspace", "--global"]

_ids = itertools.count()


def msg(
    place: Place, text: str, *, admin: bool = True, user: str | None = None, **changes
) -> IncomingMessage:
    """A message as an adapter hands it over: verified user id, bot mention already removed."""
    user_id = user or (place.admin if admin else place.user)
    message = IncomingMessage(
        platform=place.platform,  # type: ignore[arg-type]
        workspace=place.workspace,
        channel=place.channel,
        thread=place.thread,
        user_id=user_id,
        user_name=f"Name of {user_id}",
        text=text,
        message_id=f"m{next(_ids)}",
        is_dm=place.is_dm,
    )
    return dataclasses.replace(message, **changes) if changes else message


async def say(service: Service, message: IncomingMessage) -> RecordingReply:
    reply = RecordingReply()
    await service.responder.handle(message, reply)
    return reply


async def system_prompt_seen(service: Service, fake: FakeOpenAI, message: IncomingMessage) -> str:
    """Send an ordinary message; return the system message the model received for it."""
    before = len(fake.chat_requests)
    await say(service, message)
    assert len(fake.chat_requests) == before + 1
    messages = fake.last_messages()
    assert [m["role"] for m in messages].count("system") == 1
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


async def snapshot(service: Service, *places: Place) -> dict[str, object]:
    """Every prompt and audit record at the scopes of `places` (to prove nothing changed)."""
    scopes = sorted({s for p in places for s in (p.channel_scope, p.workspace_scope, GLOBAL)})
    prompts = await service.store.get_prompts(scopes)
    audits = {s: await service.store.prompt_history(s, 100) for s in scopes}
    return {"prompts": prompts, "audits": audits}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["redis", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_service(
    store_kind: str, redis_url: str, key_prefix: str, fake: FakeOpenAI
) -> AsyncIterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**overrides: object) -> Service:
        settings: dict[str, object] = {
            "_env_file": None,
            "redis_url": redis_url if store_kind == "redis" else None,
            "redis_key_prefix": key_prefix,
            "openai_base_url": fake.base_url,
            "azure_openai_api_key": "k",
            "azure_openai_deployment": "gpt-4o",
            "bot_admins": ADMINS,
            "system_prompt": SYSTEM_PROMPT,
            "llm_max_retries": 0,
        }
        settings.update(overrides)
        service = build_service(Settings(**settings))  # type: ignore[arg-type]
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


async def seed_all_scopes(service: Service, place: Place) -> None:
    for option in OPTIONS:
        await service.prompts.set(place.scope(option), f"Seeded {option or 'channel'}.", "x", "X")
