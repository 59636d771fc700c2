"""Slack's assistant pane ("Agents & AI Apps"): greeting, suggested prompts, titles, context.

- `assistant_thread_started`: the person opened the pane. The bot greets them in that thread
  (once, however often Slack delivers the event) and sets the suggested prompts (admins' own
  for the scope, else `SLACK_SUGGESTED_PROMPTS`, else the built-in ones).
- `assistant_thread_started` / `assistant_thread_context_changed` carry the channel the person
  is looking at: its name (`conversations.info`, never its messages) is remembered per pane
  thread in the shared cache, for as long as history is kept.
- A message in a pane thread (a `message.im` with a `thread_ts`) is an ordinary conversation
  (listeners.py): `pane_note()` gives the model that channel's name, and the first question
  sets the thread's title (`assistant.threads.setTitle`), once across replicas.

bolt's `AsyncAssistant` middleware is not used: it would take the pane's messages away from
the one listener every other message goes through (order, exactly-once, commands).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.intake import Intake, installation_workspace
from bot.messages import Cache
from bot.suggestions import SuggestedPrompts

log = logging.getLogger("threadwise.slack")

GREETING = (
    "Hi! Ask me anything here — I remember this thread. Type `!help` for commands, or start "
    "with one of the suggestions."
)
PROMPTS_TITLE = "Try one of these:"
TITLE_MAX = 60


@dataclass(eq=False)
class Pane:
    """What the pane's listeners need: the client, the shared cache and the suggestions."""

    client: AsyncWebClient
    cache: Cache
    suggestions: SuggestedPrompts
    ttl_seconds: int

    @staticmethod
    def key(team: str, channel: str, thread: str, part: str) -> str:
        return f"pane:{part}:{team}:{channel}:{thread}"

    async def channel_name(self, channel: str | None) -> str | None:
        if not channel:
            return None
        try:
            resp = await self.client.conversations_info(channel=channel)
        except Exception as e:
            log.info("pane context: conversations.info failed (%s)", type(e).__name__)
            return None
        info = resp.get("channel") or {}
        name = info.get("name") if isinstance(info, dict) else None
        if not isinstance(name, str) or not name or info.get("is_im") or info.get("is_mpim"):
            return None
        return name

    async def remember(self, team: str, thread: dict[str, Any], *, changed: bool) -> None:
        """Keep the name of the channel the pane's user is looking at, for this pane thread.

        A `context_changed` replaces what is kept; a `thread_started` only fills it when empty,
        so a start delivered again (or handled late) never undoes a change that followed it.
        """
        context = thread.get("context") if isinstance(thread.get("context"), dict) else {}
        name = await self.channel_name(context.get("channel_id"))
        value = json.dumps({"channel": context.get("channel_id"), "name": name})
        key = self.key(team, thread["channel_id"], thread["thread_ts"], "ctx")
        if changed:
            await self.cache.cache_set(key, value, self.ttl_seconds)
        else:
            await self.cache.cache_add(key, value, self.ttl_seconds)


def _thread(event: dict[str, Any]) -> dict[str, Any] | None:
    t = event.get("assistant_thread")
    if not isinstance(t, dict):
        return None
    if not all(isinstance(t.get(k), str) and t.get(k) for k in ("channel_id", "thread_ts")):
        return None
    return t


def register(app: AsyncApp) -> None:
    app.event("assistant_thread_started")(thread_started)
    app.event("assistant_thread_context_changed")(context_changed)


async def thread_started(event: dict[str, Any], context: AsyncBoltContext) -> None:
    intake: Intake = context["intake"]
    pane = intake.pane
    thread = _thread(event)
    intake.metrics.events.labels("slack", "assistant_thread_started").inc()
    if pane is None or thread is None:
        return
    intake.track()
    team = installation_workspace(context)
    channel, ts = thread["channel_id"], thread["thread_ts"]
    try:
        await pane.remember(team, thread, changed=False)
        if not await pane.cache.cache_add(pane.key(team, channel, ts, "hi"), "1", pane.ttl_seconds):
            return  # greeted already (Slack delivered the event again)
        try:
            await pane.client.chat_postMessage(
                channel=channel, thread_ts=ts, markdown_text=GREETING
            )
        except Exception as e:
            intake.replies.failure("chat.postMessage", e)
        prompts = await pane.suggestions.for_channel("slack", team, channel)
        try:
            await pane.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=ts,
                title=PROMPTS_TITLE,
                prompts=[p.to_slack() for p in prompts],
            )
        except Exception as e:
            intake.replies.failure("assistant.threads.setSuggestedPrompts", e)
    except Exception:
        intake.metrics.errors.labels("slack_event").inc()
        log.exception("assistant pane start failed")


async def context_changed(event: dict[str, Any], context: AsyncBoltContext) -> None:
    intake: Intake = context["intake"]
    thread = _thread(event)
    intake.metrics.events.labels("slack", "assistant_thread_context_changed").inc()
    if intake.pane is None or thread is None:
        return
    try:
        await intake.pane.remember(installation_workspace(context), thread, changed=True)
    except Exception:
        intake.metrics.errors.labels("slack_event").inc()
        log.exception("assistant pane context not remembered")


async def pane_note(intake: Intake, team: str, channel: str, thread: str | None) -> str | None:
    """For a DM thread that is a pane thread, the model's note on the channel in view ("" when
    its name is unknown); None for any other conversation. Never raises."""
    pane = intake.pane
    if pane is None or not thread:
        return None
    try:
        raw = await pane.cache.cache_get(pane.key(team, channel, thread, "ctx"))
        if not raw:
            return None
        name = json.loads(raw).get("name")
    except Exception as e:  # no context is no reason to leave a question unanswered
        log.info("pane context not read: %s", type(e).__name__)
        return None
    if not isinstance(name, str) or not name:
        return ""
    return (
        f"The person is writing from Slack's assistant pane while looking at the channel "
        f"#{name} (only its name is known here, not its messages)."
    )


async def title_first_question(
    intake: Intake, team: str, channel: str, thread: str, text: str
) -> None:
    """The first question in a pane thread names it (once, across replicas); never raises."""
    pane = intake.pane
    if pane is None or not text.strip():
        return
    try:
        if not await pane.cache.cache_add(
            pane.key(team, channel, thread, "title"), "1", pane.ttl_seconds
        ):
            return
        line = " ".join(text.split())
        title = line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"
        await pane.client.assistant_threads_setTitle(
            channel_id=channel, thread_ts=thread, title=title
        )
    except Exception as e:
        intake.replies.failure("assistant.threads.setTitle", e)
