"""Teams activities → Threadwise's common message (docs/spec.md §2).

| conversationType | channel (= conversation key part)            | answered when          |
|------------------|----------------------------------------------|------------------------|
| personal         | the 1:1 chat's conversation id                | always                 |
| groupChat        | the group chat's conversation id              | the bot is @mentioned  |
| channel          | `19:…@thread.tacv2;messageid=<root id>`       | the bot is @mentioned  |

The tenant is the workspace; the sender's AAD object id is the user id (`teams:<aad id>` in
BOT_ADMINS). The bot's own `<at>…</at>` is removed; other people's become `@Name`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from microsoft_agents.activity import Activity

from bot.messages import IncomingMessage

PERSONAL = "personal"
_AT_TAG = re.compile("(</?at>)", re.IGNORECASE)
_BLANKS = re.compile(r"[ \t]*")
_BLANK_RUN = re.compile(r"[ \t]+")
_NBSP = re.compile(r"&nbsp;|\u00a0")


def tenant_of(activity: Activity) -> str:
    """The tenant id (`channelData.tenant.id`, else `conversation.tenantId`)."""
    data = activity.channel_data
    if isinstance(data, dict):
        tenant = data.get("tenant")
        if isinstance(tenant, dict) and isinstance(tenant.get("id"), str) and tenant["id"]:
            return tenant["id"]
    conv = activity.conversation
    if conv is not None and conv.tenant_id:
        return conv.tenant_id
    # Not Teams (e.g. Azure's "Test in Web Chat"): the channel name keeps keys distinct.
    return str(activity.channel_id or "unknown")


def is_personal(activity: Activity) -> bool:
    conv = activity.conversation
    if conv is None:
        return False
    if conv.conversation_type:
        return conv.conversation_type == PERSONAL
    return not conv.is_group


def bot_ids(activity: Activity, app_id: str | None) -> set[str]:
    """Every id the bot may be mentioned by: the recipient id (`28:<app id>`) and the app id."""
    ids: set[str] = set()
    if activity.recipient is not None and activity.recipient.id:
        ids.add(activity.recipient.id)
    if app_id:
        ids.update({app_id, f"28:{app_id}"})
    return {i.lower() for i in ids}


def _at_tags(text: str, render: Callable[[str], str]) -> str:
    """Each `<at>…</at>` (any case) replaced by `render` of what it holds.

    The same as `re.sub(r"<at>(.*?)</at>", …, flags=re.I | re.S)`, in one pass over the tags:
    that pattern scans to the end of the text from every `<at>` that is never closed
    (quadratic in a run of them).
    """
    pieces = _AT_TAG.split(text)  # text, tag, text, tag, …, text
    out: list[str] = []
    done = 0  # pieces before this one are in `out`
    opening = -1  # the `<at>` waiting for its `</at>`
    rendered: dict[str, str] = {}  # a run of mentions repeats the same few names
    for i in range(1, len(pieces), 2):
        if len(pieces[i]) == len("<at>"):
            if opening < 0:
                opening = i
        elif opening >= 0:
            out += pieces[done:opening]
            inner = pieces[i - 1] if i == opening + 2 else "".join(pieces[opening + 1 : i])
            if (r := rendered.get(inner)) is None:
                r = rendered[inner] = render(inner)
            out.append(r)
            done, opening = i + 1, -1
    out += pieces[done:]
    return "".join(out)


def _remove_mention(text: str, markup: str) -> str:
    """`text` with every `markup` (any case) and the blanks around it turned into one space.

    The same as `re.sub(r"[ \t]*" + re.escape(markup) + r"[ \t]*", " ", text, flags=re.I)`,
    in linear time: that pattern retries every blank of a run that no markup follows, so
    16,000 spaces cost most of a second. Here the markup is found first and the blanks before
    it are walked back once.
    """
    core = markup.lstrip(" \t")
    lead = markup[: len(markup) - len(core)]  # blanks the markup itself starts with
    if not core:  # markup of blanks only: a run of blanks that holds it becomes one space
        return _BLANK_RUN.sub(lambda m: " " if lead in m.group() else m.group(), text)
    find = re.compile(re.escape(core), re.IGNORECASE)
    parts: list[str] = []
    pos = start = 0
    if not lead:  # the usual markup, `<at>Name</at>`: every occurrence is a match
        for m in find.finditer(text):
            parts += (text[pos : m.start()].rstrip(" \t"), " ")
            pos = _BLANKS.match(text, m.end()).end()
        parts.append(text[pos:])
        return "".join(parts)
    while (m := find.search(text, start)) is not None:
        # `core` starts with a non-blank, so only the blanks right before it can belong to
        # this match, and they must end with the markup's own leading blanks.
        before = m.start() - len(lead)
        if before < pos or text[before : m.start()] != lead:
            start = m.start() + 1
            continue
        while before > pos and text[before - 1] in " \t":
            before -= 1
        parts += (text[pos:before], " ")
        pos = start = _BLANKS.match(text, m.end()).end()
    parts.append(text[pos:])
    return "".join(parts)


def clean_text(activity: Activity, app_id: str | None) -> tuple[str, bool]:
    """The message text as the model should see it, and whether the bot was mentioned."""
    text = activity.text or ""
    mine = bot_ids(activity, app_id)
    mentioned = False
    for mention in activity.get_mentions():
        account = mention.mentioned
        if account is None:
            continue
        markup = mention.text or (f"<at>{account.name}</at>" if account.name else None)
        is_bot = bool(account.id) and account.id.lower() in mine
        mentioned = mentioned or is_bot
        if not markup:
            continue
        if is_bot:
            # The mention and the spaces around it go; one space keeps the words apart.
            text = _remove_mention(text, markup)
        else:
            name = _at_tags(markup, lambda inner: inner).strip() or (account.name or "")
            text = text.replace(markup, "@" + name)
    # Mention markup without an entity (pasted text, old clients): keep the name readable.
    text = _at_tags(text, lambda inner: "@" + inner.strip())
    text = _NBSP.sub(" ", text)
    return text.strip(), mentioned


def is_from_a_bot(activity: Activity) -> bool:
    """The bot's own posts and other bots' (`28:` ids, role `bot`) are never answered."""
    sender = activity.from_property
    if sender is None or not sender.id:
        return True
    if activity.recipient is not None and sender.id == activity.recipient.id:
        return True
    return sender.id.startswith("28:") or (sender.role or "").lower() == "bot"


def user_id_of(activity: Activity) -> str:
    """The sender's id as BOT_ADMINS and usage know it.

    In Teams it is the Entra object id (`from.aadObjectId`), else Teams' own `29:` account id.
    Other channels of the same bot registration (Web Chat, Direct Line) carry whatever `from` the
    client sends, so their ids are qualified by the channel: they can never pass for an object
    id in BOT_ADMINS.
    """
    sender = activity.from_property
    assert sender is not None and sender.id
    channel = str(activity.channel_id or "unknown")
    if channel == "msteams":
        return sender.aad_object_id or sender.id
    return f"{channel}:{sender.id}"


def to_incoming(activity: Activity, app_id: str | None) -> IncomingMessage | None:
    """The common message for a Teams `message` activity, or None when it is not for the bot."""
    if activity.type != "message" or activity.conversation is None:
        return None
    if is_from_a_bot(activity):
        return None
    text, mentioned = clean_text(activity, app_id)
    personal = is_personal(activity)
    if not (personal or mentioned):
        return None  # group chats and channels: only messages that @mention the bot
    sender = activity.from_property
    assert sender is not None and sender.id
    return IncomingMessage(
        platform="teams",
        workspace=tenant_of(activity),
        channel=activity.conversation.id,
        thread=None,
        user_id=user_id_of(activity),
        user_name=sender.name or "",
        text=text,
        message_id=activity.id or uuid.uuid4().hex,
        is_dm=personal,
        mentions_bot=mentioned or personal,
        event_id=activity.id,
    )
