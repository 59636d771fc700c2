"""Markdown (as chat models write it) → Slack mrkdwn, for the places Slack takes no Markdown.

`chat.postMessage`, `chat.update` and the streaming methods take `markdown_text` and render
Markdown themselves; this converter is for the rest (slash-command `response_url` answers,
notification fallbacks). Slack's mrkdwn differs from Markdown in the usual ways:

| Markdown | mrkdwn |
|---|---|
| `**bold**`, `__bold__` | `*bold*` |
| `*italic*`, `_italic_` | `_italic_` |
| `~~strike~~` | `~strike~` |
| `[text](https://url)` | `<https://url|text>` |
| `# Heading` | `*Heading*` on its own line |
| `- item`, `* item`, `+ item` | `• item` (nested items keep their indentation) |
| `1. item` | `1. item` |
| `> quote` | `> quote` |
| `---` | a line |

Fenced code blocks and inline code keep their content exactly (no formatting inside); only
`&`, `<` and `>` are written as `&amp;`, `&lt;`, `&gt;` everywhere, as Slack requires of all
message text, and Slack shows them as the original characters.

Every pass is linear in the text (model text can be 40,000 asterisks): no pattern here scans
ahead from each of many openings. `defuse_mentions` (and `MentionGuard`, for a streamed reply)
keeps text the bot posts from notifying anyone; it lives in `adapters.slack.mentions`.
"""

from __future__ import annotations

import re

from adapters.text import markdown_blocks

_BOLD_MARK = "\x01"  # placeholders that never occur in text, so later passes leave them alone
_ITALIC_MARK = "\x02"

_HEADING_START = re.compile(r"[ \t]{0,3}#{1,6}[ \t]+")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<text>.*)$")
_TASK = re.compile(r"^\[(?P<done>[ xX])\][ \t]+")
_QUOTE_MARKS = re.compile(r"[ \t]*(?:>[ \t]?)+")
_RULE = re.compile(r"^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BACKTICKS = re.compile(r"`+")
_IMAGE_OR_LINK = re.compile(
    r"!?\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\((?P<url>[^()\s]+(?:\([^()\s]*\)[^()\s]*)*)"
    r"(?:[ \t]+\"[^\"]*\")?\)"
)
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|mailto|ftp):[^<>\s]+)>")

# Emphasis, in the order it is applied: (opening, closing, the placeholders that replace them).
# A pair is an opening and the nearest closing after at least one character, on one line — what
# `open(?P<t>.+?)close` matches, found without that pattern's rescan of the rest of the line from
# every opening that is never closed.
_EMPHASIS = (
    (r"(?<![\w*])\*\*\*(?=\S)", r"(?<=\S)\*\*\*(?![\w*])", _BOLD_MARK + _ITALIC_MARK),
    (r"(?<!\*)\*\*(?=\S)", r"(?<=\S)\*\*(?!\*)", _BOLD_MARK),
    (r"(?<![\w_])__(?=\S)", r"(?<=\S)__(?![\w_])", _BOLD_MARK),
    (r"(?<![\w*])\*(?=[^\s*])", r"(?<=[^\s*])\*(?![\w*])", _ITALIC_MARK),
    (r"(?<![\w_])_(?=[^\s_])", r"(?<=[^\s_])_(?![\w_])", _ITALIC_MARK),
    (r"(?<!~)~~(?=\S)", r"(?<=\S)~~(?!~)", "~"),
)
_PAIRS = [(re.compile(o), re.compile(c), mark) for o, c, mark in _EMPHASIS]


def escape(text: str) -> str:
    """Slack's three control characters, as entities (the only escaping Slack decodes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    if url.startswith(("!", "@", "#")):
        # `<!here|…>`, `<@U…|…>` and `<#C…|…>` are mentions to Slack, not links.
        return f"{label} ({escape(url)})" if label else escape(url)
    # Inside <url|label> a `|` or `>` would end the parts early; Slack has no escape for `|`.
    url = escape(url).replace("|", "%7C")
    label = label.replace("|", "¦")
    return f"<{url}|{label}>" if label and label != url else f"<{url}>"


def _pairs(text: str, opening: re.Pattern[str], closing: re.Pattern[str], mark: str) -> str:
    """Each opening mark and the nearest closing one after it (a non-empty span) → `mark`s.

    Linear: the search for a closing mark only moves forward, and once an opening has no
    closing after it, no later opening can have one either.
    """
    parts: list[str] = []
    pos = 0
    while (o := opening.search(text, pos)) is not None:
        c = closing.search(text, o.end() + 1)
        if c is None:
            break
        parts += (text[pos : o.start()], mark, text[o.end() : c.start()], mark[::-1])
        pos = c.end()
    parts.append(text[pos:])
    return "".join(parts)


def _emphasis(text: str) -> str:
    """Bold, italics and strike in text that holds no code and no links (already escaped)."""
    if not any(c in text for c in "*_~" + _BOLD_MARK + _ITALIC_MARK):
        return text
    if "\n" in text:  # emphasis never spans lines
        return "\n".join(_emphasis(line) for line in text.split("\n"))
    for opening, closing, mark in _PAIRS:
        text = _pairs(text, opening, closing, mark)
    return text.replace(_BOLD_MARK, "*").replace(_ITALIC_MARK, "_")


def _inline(text: str) -> str:
    """Convert one line's inline Markdown; code spans and link targets are kept verbatim.

    A code span is a run of backticks and the next run of the same length (CommonMark's rule);
    a run that no same-length run follows is plain text. Nothing inside a span is formatting.
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    by_length: dict[int, list[int]] = {}  # run length → the indices of the runs that long
    for i, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, []).append(i)
    seen = dict.fromkeys(by_length, 0)  # per length: how many of those runs are behind us
    out: list[str] = []
    pos = i = 0
    while i < len(runs):
        a, b = runs[i]
        same, k = by_length[b - a], seen[b - a]
        while k < len(same) and same[k] <= i:
            k += 1
        seen[b - a] = k
        if k == len(same):  # never closed: the backticks are text
            i += 1
            continue
        close = runs[same[k]]
        code = text[b : close[0]]
        out.append(_inline_no_code(text[pos:a]))
        out.append("`" + escape(code.strip(" ") if b - a > 1 else code) + "`")
        pos, i = close[1], same[k] + 1
    out.append(_inline_no_code(text[pos:]))
    return "".join(out)


def _inline_no_code(text: str) -> str:
    if "[" not in text and "<" not in text:  # no link can start here
        return _emphasis(escape(text))
    out: list[str] = []
    pos = 0
    links = sorted(
        [*_IMAGE_OR_LINK.finditer(text), *_AUTOLINK.finditer(text)], key=lambda m: m.start()
    )
    for m in links:
        if m.start() < pos:
            continue
        out.append(_emphasis(escape(text[pos : m.start()])))
        url = m["url"]
        label = m.groupdict().get("text")
        out.append(_link(url, _emphasis(escape(label)) if label else ""))
        pos = m.end()
    out.append(_emphasis(escape(text[pos:])))
    return "".join(out)


def _strip_emphasis(text: str) -> str:
    """A heading is already bold: drop bold markers inside it so they do not nest."""
    return re.sub(r"\*\*|__", "", text)


def _heading(line: str) -> str | None:
    """A heading's title (closing `#`s dropped), or None when the line is no heading."""
    m = _HEADING_START.match(line)
    if m is None:
        return None
    return line[m.end() :].rstrip(" \t").rstrip("#").rstrip(" \t").strip()


def _line(line: str) -> str:
    quoted = _QUOTE_MARKS.match(line)
    if quoted is None:
        return _unquoted(line)
    # `> > text`, however deep, in one forward pass; blank after the marks → a bare `>`.
    depth = 0
    end = len(line.rstrip())
    while quoted is not None:
        if quoted.end() >= end:
            return "> " * depth + ">"
        depth += quoted.group().count(">")
        rest = quoted.end()
        quoted = _QUOTE_MARKS.match(line, rest)
    return "> " * depth + _unquoted(line[rest:]).lstrip()


def _unquoted(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    if (title := _heading(line)) is not None:
        return f"*{_inline(_strip_emphasis(title))}*" if title else ""
    if m := _BULLET.match(line):
        item = m["text"]
        if t := _TASK.match(item):
            item = ("☑ " if t["done"] in "xX" else "☐ ") + item[t.end() :]
        indent = m["indent"].replace("\t", "    ")
        return f"{indent}• {_inline(item)}"
    return _inline(line)


def to_mrkdwn(markdown: str) -> str:
    """Convert model Markdown to Slack mrkdwn (see the module docstring for the table)."""
    out: list[str] = []
    for block in markdown_blocks(markdown):
        if block.kind == "code":
            lines = block.text.split("\n")
            body = lines[1:-1] if block.close_fence is not None else lines[1:]
            # Slack's code blocks take no language tag and start right after the fence.
            code = "\n".join(body)
            out.append(block.sep + "```\n" + escape(code) + "\n```")
        else:
            out.append(block.sep + "\n".join(_line(line) for line in block.text.split("\n")))
    return "".join(out)
