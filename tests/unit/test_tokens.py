import asyncio
import os
import subprocess
import sys

import pytest
import tiktoken

from bot.tokens import TOKENIZER_DATA, TokenCounter, encoding_name_for
from tests.support.helpers import ROOT


@pytest.mark.parametrize(
    ("model", "deployment", "expected"),
    [
        ("gpt-4o", None, "o200k_base"),
        ("gpt-5", "my-deployment", "o200k_base"),
        ("gpt-4", "whatever", "cl100k_base"),
        (None, "gpt-35-turbo", "cl100k_base"),
        (None, "gpt-4o-mini", "o200k_base"),
        (None, "company-chat-prod", "o200k_base"),
        ("unknown-model", "gpt-4", "cl100k_base"),
        (None, None, "o200k_base"),
    ],
)
def test_encoding_follows_model_then_deployment_then_o200k(model, deployment, expected):
    assert encoding_name_for(model, deployment) == expected


def _cookbook(messages, enc_name):
    """Independent implementation of OpenAI's cookbook num_tokens_from_messages."""
    enc = tiktoken.get_encoding(enc_name)
    n = 0
    for m in messages:
        n += 3
        for key, value in m.items():
            n += len(enc.encode(value))
            if key == "name":
                n += 1
    return n + 3


@pytest.mark.parametrize("enc", ["o200k_base", "cl100k_base"])
def test_message_count_matches_cookbook_formula(enc):
    counter = TokenCounter(enc)
    msgs = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Héllo, wörld! 日本語 🙂", "name": "Alice_B"},
        {"role": "assistant", "content": "```py\nprint('x')\n```"},
    ]
    ours = sum(counter.message_tokens(m["role"], m["content"], m.get("name")) for m in msgs) + 3
    assert ours == _cookbook(msgs, enc)


async def test_large_text_is_counted_off_the_event_loop():
    counter = TokenCounter()
    text = "lorem ipsum dolor sit amet " * 20000
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    n = await counter.acount(text)
    t.cancel()
    assert n == counter.count(text)
    assert ticks > 1  # the loop kept running while the text was encoded


def test_tokenizer_works_offline_from_packaged_files(tmp_path):
    # A fresh interpreter with no cache configured and no network: the packaged files load.
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR",)}
    env["PYTHONPATH"] = str(ROOT)
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # any download would fail
    code = (
        "from bot.tokens import TokenCounter;"
        "print(TokenCounter('o200k_base').count('hello world'),"
        "TokenCounter('cl100k_base').count('hello world'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


def test_packaged_files_match_tiktokens_published_sha256():
    import hashlib

    published = {
        "fb374d419588a4632f3f557e76b4b70aebbca790": (
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
        ),
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4": (
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
        ),
    }
    for name, sha in published.items():
        assert hashlib.sha256((TOKENIZER_DATA / name).read_bytes()).hexdigest() == sha
