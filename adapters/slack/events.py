"""Slack events → what Threadwise does with them: pure functions, no I/O.

`route()` decides, from the event alone, whether a message is for the bot and where the answer
goes (docs/spec.md §2); `readable_text()` turns Slack's wire text (`<@U…>`, `<#C…|name>`, `&lt;`)
into what the person saw, minus the bot's own mention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Message subtypes that are a person writing: a plain message (no subtype), a thread reply also
# sent to the channel, and a message with a file attached (its text is still the person's words).
# Everything else — bot_message, message_changed, message_deleted, message_replied,
# channel_join/leave/topic/purpose, me_message, huddle_thread, assistant_app_thread, … — is
# either not a person talking to the bot or a change to an earlier post, and is ignored.
ANSWERABLE_SUBTYPES = frozenset({"thread_broadcast", "file_share"})

_TOKEN = re.compile(r"<([^<>]*)>")
_BOT = "\x00"  # where the bot's mention stood, until the text around it is tidied


@dataclass(frozen=True, slots=True)
class Route:
    """The adapter's decision for one event.

    `kind` is the metrics label (`app_mention`, `message`, `dm` or `ignored`); for an ignored
    event `reason` says why. For an answered one, `thread` is both the conversation's thread
    (IncomingMessage.thread) and the `thread_ts` the reply is posted with (None: top level).
    """

    kind: str
    reason: str = ""
    is_dm: bool = False
    mentions_bot: bool = False
    thread: str | None = None

    @property
    def answer(self) -> bool:
        return self.kind != "ignored"


def _ignored(reason: str) -> Route:
    return Route(kind="ignored", reason=reason)


def mentions(text: str, user_id: str | None) -> bool:
    """Whether Slack wire text mentions `user_id` (`<@U123>` or `<@U123|name>`)."""
    if not user_id or not text:
        return False
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text


def is_dm_channel(event: Mapping[str, Any]) -> bool:
    """Only a 1:1 DM (`im`). A group DM (`mpim`) is routed like a channel: people talk to each
    other there, so a mention starts a thread and only that thread's replies need none."""
    channel_type = event.get("channel_type")
    if channel_type:
        return channel_type == "im"
    return str(event.get("channel", "")).startswith("D")


def route(
    event: Mapping[str, Any],
    *,
    bot_user_id: str | None,
    bot_id: str | None,
    thread_followups: bool,
) -> Route:
    """Decide what to do with an `app_mention` or `message` event (docs/spec.md §2).

    Ignored, in this order: anything from a bot (`bot_id`, `bot_message`) or from this bot's
    own user; hidden events; subtypes that are not a person writing (see
    `ANSWERABLE_SUBTYPES`); events missing a user, channel or ts; channel messages that
    neither mention the bot nor reply in a thread (or reply in a thread while
    `thread_followups` is off, or reply with no text at all).
    """
    etype = event.get("type")
    subtype = event.get("subtype")
    user = event.get("user")
    if event.get("bot_id") or subtype == "bot_message" or event.get("bot_profile"):
        return _ignored("bot")
    if bot_user_id and user == bot_user_id:
        return _ignored("self")
    if bot_id and event.get("bot_id") == bot_id:
        return _ignored("self")
    if event.get("hidden"):
        return _ignored("hidden")
    if subtype is not None and subtype not in ANSWERABLE_SUBTYPES:
        return _ignored(f"subtype:{subtype}")
    if etype not in ("app_mention", "message"):
        return _ignored(f"event:{etype}")
    if not isinstance(user, str) or not user:
        return _ignored("no_user")
    channel = event.get("channel")
    ts = event.get("ts")
    if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
        return _ignored("malformed")
    text = event.get("text") or ""
    if not isinstance(text, str):
        return _ignored("malformed")
    thread_ts = event.get("thread_ts")
    if not isinstance(thread_ts, str) or not thread_ts or thread_ts == ts:
        thread_ts = None  # a thread's root message is a top-level message

    if etype == "message" and is_dm_channel(event):
        # A DM is addressed to the bot by definition. Top level → top level; in a thread → there.
        return Route(kind="dm", is_dm=True, mentions_bot=True, thread=thread_ts)
    if etype == "app_mention" or mentions(text, bot_user_id):
        # A mention in a channel (delivered as app_mention and again as message: the core
        # answers the post once, keyed by channel + ts). The answer goes in the thread.
        return Route(kind=etype, mentions_bot=True, thread=thread_ts or ts)
    if thread_ts is None:
        return _ignored("no_mention")
    if not thread_followups:
        return _ignored("followups_off")
    if not text.strip() and not event.get("files"):
        return _ignored("empty")  # an empty reply: nothing said, nothing shared
    # A reply in some thread without a mention: the core answers only if the bot is already
    # part of that thread (its "active thread" marker).
    return Route(kind="message", mentions_bot=False, thread=thread_ts)


def mentioned_users(text: str, *, exclude: str | None = None) -> list[str]:
    """User ids mentioned as `<@U…>` (without a `|name` label) whose names must be looked up."""
    found: dict[str, None] = {}  # a dict keeps the order; a list made this quadratic
    for inner in _TOKEN.findall(text or ""):
        if inner.startswith("@") and "|" not in inner:
            uid = inner[1:]
            if uid and uid != exclude:
                found.setdefault(uid)
    return list(found)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _render_token(inner: str, bot_user_id: str | None, names: Mapping[str, str]) -> str:
    label = None
    if "|" in inner:
        inner, label = inner.split("|", 1)
    if inner.startswith("@"):  # a user
        uid = inner[1:]
        if bot_user_id and uid == bot_user_id:
            return _BOT
        name = names.get(uid) or label or uid
        return f"@{name}"
    if inner.startswith("#"):  # a channel
        return f"#{label or inner[1:]}"
    if inner.startswith("!"):  # @here, @channel, @everyone, user groups, dates
        special = inner[1:]
        if special in ("here", "channel", "everyone"):
            return f"@{special}"
        if special.startswith("subteam^"):
            return label if label and label.startswith("@") else f"@{label or special[8:]}"
        return label or ""
    url = inner  # a link Slack made from what the person typed
    if url.startswith("mailto:"):
        return label or url[7:]
    if label and label != url and _strip_scheme(url) != label:
        return f"[{label}]({url})"
    return url


def _strip_scheme(url: str) -> str:
    return re.sub(r"^[a-z][a-z0-9+.-]*://", "", url)


def readable_text(text: str, *, bot_user_id: str | None, names: Mapping[str, str]) -> str:
    """Slack wire text → what the person wrote, for the model.

    The bot's own mention is removed (with the `:` or `,` people type after it), other users'
    mentions become `@Display Name`, channels `#name`, links Markdown, and Slack's `&lt;`
    `&gt;` `&amp;` the characters they stand for.
    """
    if not text:
        return ""
    parts = _TOKEN.split(text)  # text, token, text, token, …, text
    if "&" in text:
        parts[0::2] = [_unescape(p) if "&" in p else p for p in parts[0::2]]
    rendered: dict[str, str] = {}  # a message of 5,000 tokens repeats most of them
    for i in range(1, len(parts), 2):
        inner = parts[i]
        if (r := rendered.get(inner)) is None:
            r = rendered[inner] = _render_token(_unescape(inner), bot_user_id, names)
        parts[i] = r
    out = "".join(parts)
    if _BOT in out:
        out = _tidy_bot_mentions(out)
    return out.strip()


# Anchored patterns: each is tried only where a line starts and never rescans a run of blanks.
_LEADING_BOT = re.compile(r"\s*(?:\x00[\s,:;]*)+")
_LINE_START_BOT = re.compile(r"(?m)^[ \t]*(?:\x00[ \t,:;]*)+")
_BLANKS = re.compile(r"[ \t]*")
_PUNCTUATION = frozenset(",.;:!?")


def _tidy_bot_mentions(out: str) -> str:
    """Tidy what removing the bot's mention leaves: "<@BOT>: hi" → "hi", "hey <@BOT>, you" →
    "hey, you", "ask <@BOT> now" → "ask now".

    Linear in the text: a pattern such as `[ \t]*\x00` is retried at every blank of a run that
    no mention follows, which made 16,000 spaces cost more than a second; here the blanks before
    a mention are found by `rstrip` of the text since the previous one, those after it by one
    anchored match.
    """
    if m := _LEADING_BOT.match(out):  # the mention (and `:` / `,`) that opens the message
        out = out[m.end() :]
    out = _LINE_START_BOT.sub("", out)  # … or opens a line
    # A mention right before punctuation goes with the blanks before it ("hey <@BOT>, you").
    parts: list[str] = []
    pos = 0
    at = out.find(_BOT)
    while at != -1:
        if out[at + 1 : at + 2] in _PUNCTUATION:  # ("" at the end is not)
            parts.append(out[pos:at].rstrip(" \t"))
            pos = at + 1
        at = out.find(_BOT, at + 1)
    parts.append(out[pos:])
    out = "".join(parts)
    # Any other mention and the blanks around it become one space ("ask <@BOT> now").
    parts = []
    pos = 0
    at = out.find(_BOT)
    while at != -1:
        parts.append(out[pos:at].rstrip(" \t"))
        parts.append(" ")
        pos = _BLANKS.match(out, at + 1).end()
        at = out.find(_BOT, pos)
    parts.append(out[pos:])
    return "".join(parts)
