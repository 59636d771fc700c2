"""Text the bot posts to Slack never notifies anyone.

The model writes what a prompt-injected document tells it to, and command answers quote what
people typed; either can hold Slack's mention markup. Slack notifies for `<!here>`,
`<!channel>`, `<!everyone>`, `<!subteam^ID>` and `<@U…>` / `<@W…>` in a message's text; the
documented way to show such text without its meaning is to not send the control characters
(Slack: "`&`, `<` and `>` are control characters … convert them to HTML entities if they are
not used for their parsing purpose"). `markdown_text` is Markdown, though, where `&lt;` may
be read as a literal `&lt;`, and Slack does not document whether its Markdown rendering turns
bare `@here` (or a link to `!here`) into a mention. So nothing here relies on either: a complete
token is rewritten as the plain text Slack would have shown for it (`<@U123>` → `@U123`,
`<!here>` → `@here`, `<#C1|general>` → `#general`), with U+2060 WORD JOINER (invisible, no
line break) right after the `@`, and every other way to spell a mention gets the joiner after
its first character: `<!`, `<@`, `<#` that are not closed, the same after `&lt;` and as a link
target (`](!here)`), and bare `@here` / `@channel` / `@everyone`. Slack matches none of these
as a mention, and people read them as they were written.

`defuse_mentions` does a whole text; `MentionGuard` does a text that arrives in pieces (a
streamed reply) and gives the same result, holding back only the end of a piece that the next
one could still turn into a mention (an unclosed `<@…`, a trailing `@ev`). Both are linear.
"""

from __future__ import annotations

import re

WORD_JOINER = "\u2060"

_TOKEN = re.compile(r"<([!@#])([^<>]*)>")
_BROADCASTS = frozenset({"here", "channel", "everyone"})
# A character that starts a mention, and what must follow it for it to be one.
_TRIGGER = re.compile(r"(?:<|&lt;|\]\()(?=[!@#])|@(?=here|channel|everyone)", re.IGNORECASE)
_TRIGGERS = ["<!", "<@", "<#", "&lt;!", "&lt;@", "&lt;#", "](!", "](@", "](#"]
_TRIGGERS += ["@here", "@channel", "@everyone"]
_PARTIAL = frozenset(t[:k] for t in _TRIGGERS for k in range(1, len(t)))
_PARTIAL_MAX = max(len(t) for t in _TRIGGERS) - 1
# How long an unclosed `<@…` may be held back while streaming. Slack's tokens are short; a
# longer one goes out with its `<` broken (so it is still no mention), and the final text,
# which is defused whole, replaces it.
HOLD_LIMIT = 1000


def _render(m: re.Match[str]) -> str:
    kind, inner = m.group(1), m.group(2)
    target, _, label = inner.partition("|")
    if kind == "#":  # a channel: no one is notified, but it is markup all the same
        return "#" + (label or target)
    if kind == "@":
        return "@" + WORD_JOINER + (label.removeprefix("@") or target)
    if target.lower() in _BROADCASTS:
        return "@" + WORD_JOINER + target
    if target.startswith("subteam^"):
        return "@" + WORD_JOINER + (label.removeprefix("@") or target[len("subteam^") :])
    return label or target  # a date and the like: its fallback text


def _break(text: str, upto: int) -> str:
    """`text[:upto]` with a word joiner after every trigger that starts before `upto`."""
    parts: list[str] = []
    pos = 0
    for m in _TRIGGER.finditer(text):
        if m.start() >= upto:
            break
        parts += (text[pos : m.end()], WORD_JOINER)
        pos = m.end()
    parts.append(text[pos:upto])
    return "".join(parts)


def defuse_mentions(text: str) -> str:
    """`text` as Slack should show it without notifying anyone (see the module docstring)."""
    rendered = _TOKEN.sub(_render, text)
    return _break(rendered, len(rendered))


def _open_token(text: str) -> int:
    """Where a `<!`, `<@` or `<#` that may still be closed starts; len(text) if there is none."""
    lt = text.rfind("<", max(0, len(text) - HOLD_LIMIT))
    if lt == -1 or ">" in text[lt:]:  # a token holds no `<`: only the last one can be open
        return len(text)
    if lt + 1 == len(text) or text[lt + 1] in "!@#":
        return lt
    return len(text)


def _partial_trigger(text: str) -> int:
    """Where the longest end of `text` that could grow into a trigger starts; else len(text)."""
    for k in range(min(_PARTIAL_MAX, len(text)), 0, -1):
        if text[-k:].lower() in _PARTIAL:
            return len(text) - k
    return len(text)


class MentionGuard:
    """`defuse_mentions` for a text that arrives in pieces: `feed` each, then `flush`.

    The concatenated output equals `defuse_mentions` of the concatenated input (unless a
    `<@…` stays open for more than `HOLD_LIMIT` characters). Two stages, each holding back
    what the next piece may change: unclosed tokens before rendering, then a trailing part of
    a trigger before the word joiners go in.
    """

    def __init__(self) -> None:
        self._raw = ""  # not rendered yet: an unclosed `<@…` (at most HOLD_LIMIT)
        self._rendered = ""  # rendered, not released: the start of a trigger (a few characters)

    @property
    def held(self) -> bool:
        return bool(self._raw or self._rendered)

    def feed(self, piece: str) -> str:
        raw = self._raw + piece
        cut = _open_token(raw)
        self._raw = raw[cut:]
        rendered = self._rendered + _TOKEN.sub(_render, raw[:cut])
        cut = _partial_trigger(rendered)
        self._rendered = rendered[cut:]
        return _break(rendered, cut)

    def flush(self) -> str:
        rendered = self._rendered + _TOKEN.sub(_render, self._raw)
        self._raw = self._rendered = ""
        return _break(rendered, len(rendered))
