"""Reading what people see (the bot's messages at the fakes) and what the service reports (its
logs, memory and /metrics); and the check that nothing shown to a person exposes internals."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

from tests.support.fakes.fake_connector import FakeConnector, Recorded, opens_stream
from tests.support.fakes.fake_slack import FakeSlack, Message
from tests.support.helpers import ServeProcess

# -- reading what people see -------------------------------------------------------------------


def slack_finished(slack: FakeSlack, ch: str, thread: str | None) -> list[Message]:
    """The bot's finished (not still streaming) messages in a thread, oldest first."""
    return [m for m in slack.thread(ch, thread) if not m.streaming]


async def slack_thread(
    slack: FakeSlack,
    ch: str,
    thread: str | None,
    n: int = 1,
    timeout: float = 20.0,
    quiet: float = 0.3,
) -> list[str]:
    """The thread's texts once it holds `n` finished bot messages and Slack has gone quiet."""
    await slack.wait_for(lambda s: len(slack_finished(s, ch, thread)) >= n, timeout)
    if quiet:
        await slack.settle(quiet)
    return [m.text for m in slack_finished(slack, ch, thread)]


def teams_visible(connector: FakeConnector, conversation_id: str) -> list[Recorded]:
    """What a Teams user sees: plain messages and final stream messages, in order."""
    return [
        a
        for a in connector.activities
        if a.conversation_id == conversation_id
        and a.type == "message"
        and (a.stream is None or a.stream.get("streamType") == "final")
    ]


def teams_shown(connector: FakeConnector, conversation_id: str) -> str:
    """Everything a Teams user has been shown of the bot's replies, as one text.

    A stream that was cut short shows its last accepted chunk; what follows it is posted as
    ordinary messages.
    """
    parts: list[str] = []
    stream_text: dict[str, str] = {}
    for a in connector.activities:
        if a.conversation_id != conversation_id:
            continue
        info = a.stream
        if info is None:
            if a.type == "message":
                parts.append(a.text)
            continue
        kind = info.get("streamType")
        if opens_stream(info):
            # The model's first words, or informative text (a progress bar, not the reply).
            stream_text[a.id] = a.text if kind == "streaming" else ""
            parts.append(f"\x00stream:{a.id}")
        elif kind in ("streaming", "final"):
            stream_text[info.get("streamId") or a.id] = a.text
    out = []
    for p in parts:
        if p.startswith("\x00stream:"):
            shown = stream_text.get(p.split(":", 1)[1], "")
            if shown:
                out.append(shown)
        else:
            out.append(p)
    return "\n\n".join(out)


async def teams_thread(
    connector: FakeConnector,
    conversation_id: str,
    n: int = 1,
    timeout: float = 20.0,
    quiet: float = 0.3,
) -> list[str]:
    """The conversation's visible bot messages once there are `n` (then a quiet moment)."""
    await connector.wait_for(lambda _: len(teams_visible(connector, conversation_id)) >= n, timeout)
    if quiet:
        await asyncio.sleep(quiet)
    return [a.text for a in teams_visible(connector, conversation_id)]


# -- what the bot user sees must never show internals ------------------------------------------

INTERNALS = re.compile(
    r"Traceback|Exception|\w+Error\b|File \"|\.py\b|redis|127\.0\.0\.1|localhost|https?://"
    r"|HTTP \d{3}|status (?:code )?\d{3}|openai\.|aiohttp|httpx|errno|stack trace",
    re.IGNORECASE,
)


def assert_no_internals(text: str) -> None:
    found = INTERNALS.search(text)
    assert found is None, f"user-facing text shows internals ({found.group(0)!r}): {text!r}"


# -- what the service reports ------------------------------------------------------------------


def log_records(svc: ServeProcess) -> list[dict]:
    """The service's JSON log lines (the start-up banner and other plain lines are skipped)."""
    out = []
    for line in svc.lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rss_bytes(svc: ServeProcess) -> int:
    """Resident memory of the service process."""
    assert svc.proc is not None
    with open(f"/proc/{svc.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def metric(svc: ServeProcess, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when absent)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/metrics") as r:
            text = await r.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()) or not want:
            total += float(value)
    return total
