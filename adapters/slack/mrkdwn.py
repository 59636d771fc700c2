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
"""

from __future__ import annotations

import re

from adapters.text import markdown_blocks

_BOLD_MARK = "\x01"  # placeholders that never occur in text, so later passes leave them alone
_ITALIC_MARK = "\x02"

_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?P<text>.*?)[ \t]*#*[ \t]*$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<text>.*)$")
_TASK = re.compile(r"^\[(?P<done>[ xX])\][ \t]+")
_QUOTE = re.compile(r"^(?P<marks>[ \t]*(?:>[ \t]?)+)(?P<text>.*)$")
_RULE = re.compile(r"^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_IMAGE_OR_LINK = re.compile(
    r"!?\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\((?P<url>[^()\s]+(?:\([^()\s]*\)[^()\s]*)*)"
    r"(?:[ \t]+\"[^\"]*\")?\)"
)
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|mailto|ftp):[^<>\s]+)>")
_BOLD_ITALIC = re.compile(r"(?<![\w*])\*\*\*(?=\S)(?P<t>.+?)(?<=\S)\*\*\*(?![\w*])")
_BOLD_STARS = re.compile(r"(?<!\*)\*\*(?=\S)(?P<t>.+?)(?<=\S)\*\*(?!\*)")
_BOLD_UNDERSCORES = re.compile(r"(?<![\w_])__(?=\S)(?P<t>.+?)(?<=\S)__(?![\w_])")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(?P<t>.+?)(?<=[^\s*])\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(?P<t>.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"(?<!~)~~(?=\S)(?P<t>.+?)(?<=\S)~~(?!~)")


def escape(text: str) -> str:
    """Slack's three control characters, as entities (the only escaping Slack decodes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    # Inside <url|label> a `|` or `>` would end the parts early; Slack has no escape for `|`.
    url = escape(url).replace("|", "%7C")
    label = label.replace("|", "¦")
    return f"<{url}|{label}>" if label and label != url else f"<{url}>"


def _emphasis(text: str) -> str:
    """Bold, italics and strike in text that holds no code and no links (already escaped)."""
    text = _BOLD_ITALIC.sub(
        lambda m: f"{_BOLD_MARK}{_ITALIC_MARK}{m['t']}{_ITALIC_MARK}{_BOLD_MARK}", text
    )
    text = _BOLD_STARS.sub(lambda m: f"{_BOLD_MARK}{m['t']}{_BOLD_MARK}", text)
    text = _BOLD_UNDERSCORES.sub(lambda m: f"{_BOLD_MARK}{m['t']}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(lambda m: f"{_ITALIC_MARK}{m['t']}{_ITALIC_MARK}", text)
    text = _ITALIC_UNDERSCORE.sub(lambda m: f"{_ITALIC_MARK}{m['t']}{_ITALIC_MARK}", text)
    text = _STRIKE.sub(lambda m: f"~{m['t']}~", text)
    return text.replace(_BOLD_MARK, "*").replace(_ITALIC_MARK, "_")


def _inline(text: str) -> str:
    """Convert one line's inline Markdown; code spans and link targets are kept verbatim."""
    out: list[str] = []
    pos = 0
    # Protect code spans first: nothing inside them is formatting.
    for m in _INLINE_CODE.finditer(text):
        out.append(_inline_no_code(text[pos : m.start()]))
        out.append("`" + escape(m.group(2).strip(" ") if m.group(1) != "`" else m.group(2)) + "`")
        pos = m.end()
    out.append(_inline_no_code(text[pos:]))
    return "".join(out)


def _inline_no_code(text: str) -> str:
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


def _line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    if m := _HEADING.match(line):
        title = m["text"].strip()
        return f"*{_inline(_strip_emphasis(title))}*" if title else ""
    if m := _QUOTE.match(line):
        if line.lstrip().startswith(">"):
            depth = m["marks"].count(">")
            return "> " * depth + _line(m["text"]).lstrip() if m["text"].strip() else ">"
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
