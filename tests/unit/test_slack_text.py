"""Markdown splitting (adapters/text.py) and Markdown → mrkdwn (adapters/slack/mrkdwn.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.mrkdwn import to_mrkdwn
from adapters.text import markdown_blocks, split_markdown, utf16_length

FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})")


def words(text: str) -> list[str]:
    """The words of a text, fence lines left out (splitting adds fences around code parts)."""
    return [w for line in text.split("\n") if not FENCE_LINE.match(line) for w in line.split()]


def fences_balanced(piece: str) -> bool:
    return sum(1 for line in piece.split("\n") if FENCE_LINE.match(line)) % 2 == 0


# -- split_markdown: examples ---------------------------------------------------------------


def test_text_that_fits_is_one_unchanged_message():
    text = "# Title\n\nSome *text*.\n\n\n```py\nx = 1\n\n\ny = 2\n```\n"
    assert split_markdown(text, 1000) == [text]


def test_blank_text_gives_no_messages():
    assert split_markdown("  \n\n ", 10) == []


def test_paragraphs_are_packed_greedily_and_cut_between_paragraphs():
    text = "aaa aaa\n\nbbb bbb\n\nccc ccc"
    assert split_markdown(text, 16) == ["aaa aaa\n\nbbb bbb", "ccc ccc"]


def test_long_paragraph_is_cut_between_lines_then_between_words():
    text = "one two three\nfour five six seven eight"
    pieces = split_markdown(text, 15)
    assert pieces == ["one two three", "four five six", "seven eight"]


def test_code_block_is_never_cut_when_it_fits_in_a_message():
    code = "```python\nprint(1)\n\nprint(2)\n```"
    text = "intro words here\n\n" + code + "\n\nafter"
    pieces = split_markdown(text, len(code) + 2)
    assert code in pieces


def test_too_long_code_block_is_closed_and_reopened_with_its_own_fence():
    code = "~~~~js\n" + "\n".join(f"line{i}();" for i in range(20)) + "\n~~~~"
    pieces = split_markdown(code, 60)
    assert len(pieces) > 1
    for piece in pieces:
        assert piece.startswith("~~~~js\n") and piece.endswith("\n~~~~")
        assert len(piece) <= 60
    assert words("\n".join(pieces)) == words(code)


def test_unclosed_code_block_gets_closed_when_split():
    code = "```\n" + "\n".join(["x = 1"] * 30)
    pieces = split_markdown(code, 40)
    assert all(p.startswith("```\n") and p.endswith("\n```") for p in pieces)


def test_a_word_longer_than_a_message_is_the_only_mid_word_cut():
    text = "short " + "x" * 25 + " end"
    pieces = split_markdown(text, 10)
    assert all(len(p) <= 10 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_length_function_is_respected_utf16():
    text = "😀😀😀 😀😀😀\n\n😀😀😀"  # each emoji is 2 UTF-16 units
    pieces = split_markdown(text, 8, length=utf16_length)
    assert all(utf16_length(p) <= 8 for p in pieces)
    assert words("\n".join(pieces)) == words(text)


def test_blocks_keep_their_original_separators():
    blocks = markdown_blocks("a\nb\n\n\n```\nc\n\nd\n```\ne")
    assert [(b.kind, b.text, b.sep) for b in blocks] == [
        ("text", "a\nb", ""),
        ("code", "```\nc\n\nd\n```", "\n\n\n"),
        ("text", "e", "\n"),
    ]


def test_fence_with_longer_closing_run_and_indented_fence_in_a_list():
    text = "1. step\n   ```sh\n   ls\n   ```\n2. next"
    kinds = [b.kind for b in markdown_blocks(text)]
    assert kinds == ["text", "code", "text"]


def test_max_len_must_be_positive():
    with pytest.raises(ValueError):
        split_markdown("x", 0)


# -- split_markdown: properties -------------------------------------------------------------

word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéß😀*_[]()#-", min_size=1, max_size=12)
line = st.lists(word, min_size=1, max_size=8).map(" ".join)
paragraph = st.lists(line, min_size=1, max_size=4).map("\n".join)
code_block = st.tuples(
    st.sampled_from(["```", "```python", "~~~", "````"]),
    st.lists(st.one_of(line, st.just("")), min_size=0, max_size=8),
).map(lambda t: t[0] + "\n" + "\n".join(t[1]) + "\n" + t[0].rstrip("python"))
document = st.lists(st.one_of(paragraph, paragraph, code_block), min_size=1, max_size=10).map(
    "\n\n".join
)


@settings(max_examples=300, deadline=None)
@given(document, st.integers(min_value=40, max_value=400))
def test_split_keeps_every_word_in_order_within_the_limit_with_balanced_fences(text, max_len):
    pieces = split_markdown(text, max_len)
    assert all(len(p) <= max_len for p in pieces)
    assert all(p.strip() for p in pieces)
    assert all(fences_balanced(p) for p in pieces)
    assert words("\n".join(pieces)) == words(text)


@settings(max_examples=100, deadline=None)
@given(document, st.integers(min_value=40, max_value=400))
def test_split_with_utf16_length_keeps_words_within_the_limit(text, max_len):
    pieces = split_markdown(text, max_len, length=utf16_length)
    assert all(utf16_length(p) <= max_len for p in pieces)
    assert words("\n".join(pieces)) == words(text)


@settings(max_examples=100, deadline=None)
@given(document)
def test_split_of_text_that_fits_is_identity(text):
    assert split_markdown(text, len(text)) == [text]


# -- mrkdwn ---------------------------------------------------------------------------------

MRKDWN_TABLE = [
    ("**bold**", "*bold*"),
    ("__bold__", "*bold*"),
    ("*italic*", "_italic_"),
    ("_italic_", "_italic_"),
    ("***both***", "*_both_*"),
    ("~~gone~~", "~gone~"),
    ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
    ("[Docs](https://example.com/a?b=1&c=2)", "<https://example.com/a?b=1&amp;c=2|Docs>"),
    ("<https://example.com>", "<https://example.com>"),
    ("![diagram](https://example.com/d.png)", "<https://example.com/d.png|diagram>"),
    ("# Heading", "*Heading*"),
    ("### **Already bold** heading ###", "*Already bold heading*"),
    ("- one\n- two", "• one\n• two"),
    ("* star item", "• star item"),
    ("+ plus item", "• plus item"),
    ("- top\n  - nested *x*", "• top\n  • nested _x_"),
    ("- [x] done\n- [ ] todo", "• ☑ done\n• ☐ todo"),
    ("1. first\n2. second", "1. first\n2. second"),
    ("> quoted **b**", "> quoted *b*"),
    ("---", "──────────"),
    ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
    ("`**not bold** <b>`", "`**not bold** &lt;b&gt;`"),
    ("``code with ` tick``", "`code with ` tick`"),
    ("```python\nx = '**no**' < 3\n_y_ = 1\n```", "```\nx = '**no**' &lt; 3\n_y_ = 1\n```"),
    ("snake_case_name stays", "snake_case_name stays"),
    ("2 * 3 * 4", "2 * 3 * 4"),
    ("a|b [x|y](https://e.com/p|q)", "a|b <https://e.com/p%7Cq|x¦y>"),
    ("plain text", "plain text"),
]


@pytest.mark.parametrize(("markdown", "expected"), MRKDWN_TABLE)
def test_markdown_converts_to_mrkdwn(markdown, expected):
    assert to_mrkdwn(markdown) == expected


def test_mrkdwn_keeps_paragraph_breaks_and_code_blocks_between_text():
    md = "Intro **x**\n\n```\n**raw**\n```\nAfter _y_"
    assert to_mrkdwn(md) == "Intro *x*\n\n```\n**raw**\n```\nAfter _y_"
