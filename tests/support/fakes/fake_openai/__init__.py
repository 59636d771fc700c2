"""A local fake of the Azure OpenAI v1 Chat Completions API, speaking the real wire format.

Used through the real ``openai.AsyncOpenAI(base_url=fake.base_url, api_key=...)`` client::

    async with FakeOpenAI(reply="hi") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        fake.script(rate_limited(retry_after=1), Reply("second try"))
        ...
        assert fake.last_messages()[0] == {"role": "system", "content": "..."}

Standalone (for end-to-end tests and benchmarks)::

    python -m tests.support.fakes.fake_openai --port 0 --tokens-per-second 50
    # prints "READY http://127.0.0.1:PORT/openai/v1/" once listening

and scripted over HTTP: ``POST /_fake/script`` (JSON list of behaviours, see
:func:`behaviour_from_dict`), ``GET /_fake/requests``, ``POST /_fake/reset``,
``POST /_fake/config``. :class:`FakeOpenAIControl` is a small client for those routes.

Where things are: ``server`` (FakeOpenAI: knobs, lifecycle, scripting, control routes),
``chat`` (the chat completions handler, JSON and SSE replies), ``behaviours`` (what can be
scripted, Azure's canned errors), ``tokens`` (token counts), ``control`` (the control
client), ``plumbing`` and ``wire`` (pieces shared below them), ``__main__`` (standalone).
"""

from tests.support.fakes.fake_openai.behaviours import (
    Behaviour,
    EmptyStream,
    Error,
    Hang,
    Reply,
    StreamDies,
    behaviour_from_dict,
    context_length_exceeded,
    invalid_unicode,
    prompt_content_filter,
    rate_limited,
    server_error,
)
from tests.support.fakes.fake_openai.control import FakeOpenAIControl
from tests.support.fakes.fake_openai.server import FakeOpenAI
from tests.support.fakes.fake_openai.tokens import count_prompt_tokens, count_tokens
from tests.support.fakes.fake_openai.wire import RecordedRequest
from tests.support.fakes.fake_openai.wire import _last_user_text as _last_user_text
from tests.support.fakes.fake_openai.wire import split_chunks as split_chunks

__all__ = [
    "Behaviour",
    "EmptyStream",
    "Error",
    "FakeOpenAI",
    "FakeOpenAIControl",
    "Hang",
    "RecordedRequest",
    "Reply",
    "StreamDies",
    "behaviour_from_dict",
    "context_length_exceeded",
    "count_prompt_tokens",
    "count_tokens",
    "invalid_unicode",
    "prompt_content_filter",
    "rate_limited",
    "server_error",
]
