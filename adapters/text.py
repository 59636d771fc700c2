"""Platform-neutral text helpers: Markdown-aware splitting of long replies.

Chat platforms cap the size of one message (Slack: about 12,000 characters of `markdown_text`;
Teams: about 100 KB of UTF-16). A model reply longer than that is posted as several messages,
cut where a reader would cut: between paragraphs, never inside a fenced code block unless the
block alone is too long (then the block is closed and reopened with the same fence), never in
the middle of a word unless a single "word" is longer than a whole message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# How a platform measures a message: characters, UTF-16 units or bytes. It must be additive
# (length(a + b) == length(a) + length(b)) and count every character as at least 1, as those all
# do: the splitter then adds up lengths instead of measuring ever longer candidates, and stays
# linear in the text.
Length = Callable[[str], int]

# An opening fence: optional indentation (list items indent their code), three or more backticks
# or tildes, then an info string (a backtick fence's info string holds no backtick).
_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph (`kind == "text"`) or a fenced code block (`kind == "code"`).

    `sep` is the whitespace that preceded the block in the source ("" for the first block), so
    blocks that stay together are rejoined exactly as they were written.
    """

    kind: str
    text: str
    sep: str = ""
    open_fence: str = ""  # the opening fence line, for code blocks
    close_fence: str | None = None  # the closing fence line; None when the source never closed it


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped[0] == fence[0] and set(stripped) == {fence[0]}


def markdown_blocks(text: str) -> list[Block]:
    """Cut Markdown into paragraphs and fenced code blocks (code blocks keep their blank lines)."""
    lines = text.replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    para: list[str] = []
    pending_sep: list[str] = []  # lines (blank) seen since the previous block ended
    i = 0

    def sep_text() -> str:
        # The separator is the newline that ended the previous block plus the blank lines.
        return "\n" + "\n".join(pending_sep) + ("\n" if pending_sep else "") if blocks else ""

    def flush_para() -> None:
        nonlocal para, pending_sep
        if para:
            blocks.append(Block("text", "\n".join(para), sep_text()))
            para = []
            pending_sep = []

    while i < len(lines):
        line = lines[i]
        m = _FENCE_OPEN.match(line)
        if m:
            flush_para()
            fence = m.group("fence")
            body = [line]
            close: str | None = None
            i += 1
            while i < len(lines):
                if _closes(lines[i], fence):
                    close = lines[i]
                    body.append(lines[i])
                    i += 1
                    break
                body.append(lines[i])
                i += 1
            blocks.append(Block("code", "\n".join(body), sep_text(), line, close))
            pending_sep = []
            continue
        if line.strip() == "":
            flush_para()
            if blocks:
                pending_sep.append(line)
        else:
            para.append(line)
        i += 1
    flush_para()
    return blocks


_SPACES = re.compile(r"\s*")
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")  # the space before the text's last word


def _fit(line: str, pos: int, limit: int, length: Length) -> int:
    """How many characters of `line` from `pos` fit in `limit` (at least 1, at most `limit`)."""
    hi = min(limit, len(line) - pos)
    if length(line[pos : pos + hi]) <= limit:
        return hi
    lo = 1
    while lo < hi:  # the longest prefix that fits, by binary search
        mid = (lo + hi + 1) // 2
        if length(line[pos : pos + mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split_words(line: str, limit: int, length: Length) -> Iterator[str]:
    """Split one over-long line at spaces; whitespace at a cut disappears.

    Each part takes as many whole words as fit (with the spaces between them); a word longer
    than a whole part is cut by characters. Measured a part at a time, not a word at a time.
    """
    pos = _SPACES.match(line).end()
    while pos < len(line):
        k = _fit(line, pos, limit, length)
        end = pos + k
        if end == len(line) or line[end].isspace():  # the part ends between words
            yield line[pos:end].rstrip()
            pos = _SPACES.match(line, end).end()
        elif gap := _LAST_SPACE.search(line, pos, end):  # back to before the cut word
            yield line[pos : gap.start()].rstrip()
            pos = gap.end()
        else:  # one word longer than a part
            yield line[pos:end]
            pos = end


def _split_lines(text: str, limit: int, length: Length) -> Iterator[str]:
    """Pack whole lines into parts of at most `limit`; a longer line is cut at spaces."""
    newline = length("\n")
    cur: list[str] | None = None
    size = 0
    blank = True  # whether `cur` holds only whitespace
    for line in text.split("\n"):
        parts = [line] if length(line) <= limit else list(_split_words(line, limit, length))
        for part in parts:
            n = length(part)
            if cur is not None and size + newline + n <= limit:
                cur += ("\n", part)
                size += newline + n
                blank = blank and not part.strip()
                continue
            if cur is not None:
                yield "".join(cur)
            cur, size, blank = [part], n, not part.strip()
    if cur is not None and not blank:
        yield "".join(cur)


def _split_block(block: Block, limit: int, length: Length) -> list[str]:
    if length(block.text) <= limit:
        return [block.text]
    if block.kind == "code":
        opening = block.open_fence
        indent = opening[: len(opening) - len(opening.lstrip())]
        fence_chars = opening.strip()
        fence = fence_chars[: len(fence_chars) - len(fence_chars.lstrip(fence_chars[0]))]
        closing = block.close_fence if block.close_fence is not None else indent + fence
        inner_lines = block.text.split("\n")[1:]
        if block.close_fence is not None:
            inner_lines = inner_lines[:-1]
        inner = "\n".join(inner_lines)
        budget = limit - length(opening + "\n" + "\n" + closing)
        if budget >= 1:
            return [
                opening + "\n" + part + "\n" + closing
                for part in _split_lines(inner, budget, length)
            ] or [opening + "\n" + closing]
        # A limit too small for any fence: plain text is the best there is.
    return list(_split_lines(block.text, limit, length))


def split_markdown(text: str, max_len: int, *, length: Length = len) -> list[str]:
    """Split Markdown into messages of at most `max_len` (measured by `length`).

    Cuts between paragraphs and code blocks, packing as many whole blocks into each message as
    fit; a paragraph longer than a message is cut between lines, then between words; a code block
    longer than a message is cut between lines and each part is wrapped in the block's own fences,
    so every part renders as code. Text that fits is returned unchanged, as one message. Empty or
    blank text gives no messages.
    """
    if max_len < 1:
        raise ValueError("max_len must be positive")
    if not text.strip():
        return []
    if length(text) <= max_len:
        return [text]
    pieces: list[str] = []
    cur: list[str] = []  # the message being filled
    size = 0
    empty = blank = True  # whether `cur` reads "" / only whitespace
    for block in markdown_blocks(text):
        for i, part in enumerate(_split_block(block, max_len, length)):
            n = length(part)
            sep = block.sep if i == 0 else "\n"
            if not empty and size + length(sep) + n <= max_len:
                cur += (sep, part)
                size += length(sep) + n
                blank = blank and not part.strip()
                continue
            if not blank:
                pieces.append("".join(cur))
            cur, size = [part], n
            empty, blank = not part, not part.strip()
    if not blank:
        pieces.append("".join(cur))
    return pieces


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as Teams and JavaScript count it."""
    return len(text.encode("utf-16-le")) // 2
