"""The Slack Web API methods the fake answers (`_m_<method>`), as a mixin of `FakeSlack`.

Each `_m_chat_postMessage`-style method takes the call's merged params and returns the answer's
fields (`"ok": true` is added by the server) or raises `SlackError`. `FakeSlack._api` finds the
method by name, so a subclass overrides one (`super()._m_chat_startStream(params)`) to watch it.
Messages are kept with their final Markdown, streaming state and thread, as Slack shows them.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.support.fakes.fake_slack.state import (
    TEXT_LIMIT,
    FakeSlackState,
    Message,
    SlackError,
)

if TYPE_CHECKING:
    from tests.support.fakes.fake_slack.files import FakeSlackFiles


def _user_record(uid: str, team: str, spec: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"display_name": spec, "real_name": spec}
    display = spec.get("display_name", "")
    real = spec.get("real_name", display)
    return {
        "id": uid,
        "team_id": spec.get("team_id", team),  # a Slack Connect user: their own org's workspace
        "name": spec.get("name", (display or real or uid).lower().replace(" ", ".")),
        "real_name": real,
        "is_bot": bool(spec.get("is_bot", False)),
        "profile": {"display_name": display, "real_name": real},
    }


class SlackWebApi:
    """The Web API methods; `FakeSlack` sets the attributes below and serves them over HTTP."""

    team_id: str
    enterprise_id: str | None
    org_install: bool
    bot_user_id: str
    bot_id: str
    users: dict[str, str | Mapping[str, Any]]
    channels: dict[str, str]
    markdown_limit: int
    socket_mode_url: str | None
    state: FakeSlackState
    files: FakeSlackFiles
    _ts: itertools.count[int]

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    @staticmethod
    def _need(params: Mapping[str, Any], *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise SlackError("channel_not_found" if name == "channel" else "invalid_arguments")

    @staticmethod
    def _chunk_text(params: Mapping[str, Any]) -> str:
        text = params.get("markdown_text") or ""
        for chunk in params.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += chunk.get("text", "")
        return text

    def _message_json(self, m: Message) -> dict[str, Any]:
        out = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": m.text,
            "ts": m.ts,
        }
        if m.thread_ts:
            out["thread_ts"] = m.thread_ts
        if m.blocks:
            out["blocks"] = m.blocks
        return out

    def message_payload(self, m: Message) -> dict[str, Any]:
        """`m` as Slack puts it in an interactivity payload (`block_actions(…)`)."""
        return self._message_json(m)

    @staticmethod
    def feedback_buttons(m: Message) -> dict[str, Any] | None:
        """The `feedback_buttons` element of `m`'s `context_actions` block, if it has one."""
        for block in m.blocks or []:
            if block.get("type") == "context_actions":
                for element in block.get("elements", []):
                    if element.get("type") == "feedback_buttons":
                        return element
        return None

    def _find(self, params: Mapping[str, Any]) -> Message:
        self._need(params, "channel", "ts")
        m = self.state.messages.get((params["channel"], params["ts"]))
        if m is None or m.deleted:
            raise SlackError("message_not_found")
        return m

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = {
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "user": "threadwise",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.org_install,
        }
        if self.enterprise_id is not None:  # only Grid orgs have one
            answer["enterprise_id"] = self.enterprise_id
        return answer

    def _m_files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.files.info(params)

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = params.get("user", "")
        if uid == self.bot_user_id and uid not in self.users:  # Slack knows its bot users too
            return {"user": _user_record(uid, self.team_id, {"name": "threadwise", "is_bot": True})}
        if uid not in self.users:
            raise SlackError("user_not_found")
        return {"user": _user_record(uid, self.team_id, self.users[uid])}

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.socket_mode_url:
            raise SlackError("internal_error")
        return {"url": self.socket_mode_url}

    def _post_text(self, params: Mapping[str, Any]) -> str:
        md = params.get("markdown_text")
        text = params.get("text")
        if md is not None and (text or params.get("blocks")):
            raise SlackError("invalid_arguments")  # markdown_text goes alone
        if md is not None:
            if len(md) > self.markdown_limit:
                raise SlackError("msg_too_long")
            return md
        if text:
            if len(text) > TEXT_LIMIT:
                raise SlackError("msg_too_long")
            return text
        if params.get("blocks"):
            return json.dumps(params["blocks"])
        raise SlackError("no_text")

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel")
        text = self._post_text(params)
        m = Message(
            params["channel"],
            self._next_ts(),
            text,
            thread_ts=params.get("thread_ts") or None,
            user=self.bot_user_id,
        )
        m.blocks = params.get("blocks") or None
        self.state.messages[(m.channel, m.ts)] = m
        return {"channel": m.channel, "ts": m.ts, "message": self._message_json(m)}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        m.text = self._post_text(params)
        m.blocks = params.get("blocks") or None
        m.edits += 1
        return {"channel": m.channel, "ts": m.ts, "text": m.text, "message": self._message_json(m)}

    def _m_chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        m.deleted = True
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_startStream(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "thread_ts")
        channel = params["channel"]
        if not channel.startswith("D") and not (
            params.get("recipient_team_id") and params.get("recipient_user_id")
        ):
            raise SlackError("invalid_arguments")  # required when streaming to channels
        text = self._chunk_text(params)
        if len(text) > self.markdown_limit:
            raise SlackError("msg_too_long")
        m = Message(
            channel,
            self._next_ts(),
            text,
            thread_ts=params["thread_ts"],
            streaming=True,
            user=self.bot_user_id,
            recipient_team_id=params.get("recipient_team_id"),
            recipient_user_id=params.get("recipient_user_id"),
        )
        self.state.messages[(m.channel, m.ts)] = m
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_appendStream(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        if not m.streaming:
            raise SlackError("message_not_in_streaming_state")
        text = self._chunk_text(params)
        if len(text) > self.markdown_limit:
            raise SlackError("msg_too_long")
        m.text += text
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        if not m.streaming:
            raise SlackError("message_not_in_streaming_state")
        m.text += self._chunk_text(params)
        m.streaming = False
        m.blocks = params.get("blocks") or None
        return {"channel": m.channel, "ts": m.ts, "message": self._message_json(m)}

    def _m_assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts")
        self.state.statuses.append(
            {k: params.get(k) for k in ("channel_id", "thread_ts", "status", "loading_messages")}
        )
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts", "prompts")
        prompts = params["prompts"]
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise SlackError("invalid_arguments")
        self.state.suggested_prompts.append(
            {
                "channel_id": params["channel_id"],
                "thread_ts": params["thread_ts"],
                "title": params.get("title"),
                "prompts": prompts,
            }
        )
        return {}

    def _m_assistant_threads_setTitle(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts", "title")
        self.state.titles.append({k: params[k] for k in ("channel_id", "thread_ts", "title")})
        return {}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "user")
        self.state.ephemerals.append(
            {k: params.get(k) for k in ("channel", "user", "thread_ts", "text")}
        )
        return {"message_ts": self._next_ts()}

    def _m_views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "user_id", "view")
        view = params["view"]
        if isinstance(view, str):
            view = json.loads(view)
        self.state.views.append({"user_id": params["user_id"], "view": view})
        return {"view": {"id": "V" + uuid.uuid4().hex[:8].upper(), **view}}

    def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel", "")
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return {"channel": {"id": channel, "name": self.channels[channel], "is_channel": True}}

    def _m_reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "timestamp", "name")
        key = (params["channel"], params["timestamp"], params["name"])
        if key in self.state.reactions:
            raise SlackError("already_reacted")
        self.state.reactions.add(key)
        return {}

    def _m_reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "timestamp", "name")
        key = (params["channel"], params["timestamp"], params["name"])
        if key not in self.state.reactions:
            raise SlackError("no_reaction")
        self.state.reactions.discard(key)
        return {}
