"""The LLM client through the real openai SDK against the local fake (Azure wire format)."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken

from bot.llm import ENTRA_SCOPE, LLMClient, ModelError, make_llm
from bot.settings import Settings
from tests.support.fakes.fake_openai import (
    FakeOpenAI,
    Hang,
    Reply,
    StreamDies,
    context_length_exceeded,
    invalid_unicode,
    prompt_content_filter,
    rate_limited,
    server_error,
)

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


def client(fake: FakeOpenAI, **kw) -> LLMClient:
    args = dict(
        base_url=fake.base_url,
        deployment="gpt-4o",
        api_key="test-key",
        max_response_tokens=256,
        temperature=None,
        max_retries=2,
        timeout=5,
    )
    args.update(kw)
    return LLMClient(**args)


async def collect(llm: LLMClient, messages=MSGS):
    seen: list[str] = []

    async def on_delta(d: str) -> None:
        seen.append(d)

    result = await llm.stream(messages, on_delta)
    return result, seen


async def test_stream_delivers_deltas_finish_reason_and_usage():
    async with FakeOpenAI(reply="Hello there, friend.") as fake:
        llm = client(fake)
        result, seen = await collect(llm)
        await llm.close()
    assert "".join(seen) == result.text == "Hello there, friend."
    assert result.finish_reason == "stop"
    assert result.prompt_tokens and result.completion_tokens
    body = fake.chat_requests[-1].body
    assert body["model"] == "gpt-4o"
    assert body["max_tokens"] == 256  # a server that is not Azure / OpenAI: max_tokens
    assert "max_completion_tokens" not in body
    assert "temperature" not in body
    assert body["stream_options"] == {"include_usage": True}


async def test_temperature_is_sent_only_when_set():
    async with FakeOpenAI() as fake:
        llm = client(fake, temperature=0.2)
        await collect(llm)
        await llm.close()
    assert fake.chat_requests[-1].body["temperature"] == 0.2


async def test_key_auth_sends_the_key():
    async with FakeOpenAI(api_key="test-key") as fake:
        llm = client(fake)
        result, _ = await collect(llm)
        await llm.close()
    assert result.text.startswith("Echo:")


class KnownTokenCredential:
    """An azure-identity style async credential that hands out a known token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return AccessToken("entra-token-123", int(time.time()) + 3600)

    async def get_token_info(self, *scopes, options=None):
        from azure.core.credentials import AccessTokenInfo

        self.scopes.append(scopes)
        return AccessTokenInfo("entra-token-123", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *a):
        pass


async def test_without_a_key_entra_id_bearer_token_is_used(monkeypatch):
    import azure.identity.aio as identity

    cred = KnownTokenCredential()
    made = {}

    def fake_default(**kw):
        made.update(kw)
        return cred

    monkeypatch.setattr(identity, "DefaultAzureCredential", fake_default)
    async with FakeOpenAI() as fake:
        settings = Settings(
            openai_base_url=fake.base_url,
            azure_openai_deployment="gpt-4o",
            azure_client_id="uami-client-id",
        )
        llm = make_llm(settings)
        await collect(llm)
        await llm.close()
    assert fake.chat_requests[-1].headers["Authorization"] == "Bearer entra-token-123"
    assert cred.scopes and cred.scopes[0] == (ENTRA_SCOPE,)
    assert made["managed_identity_client_id"] == "uami-client-id"


def test_azure_endpoint_becomes_the_v1_base_url():
    s = Settings(azure_openai_endpoint="https://res.openai.azure.com/", azure_openai_deployment="d")
    assert s.model_base_url == "https://res.openai.azure.com/openai/v1/"


async def test_429_is_retried_honouring_retry_after():
    async with FakeOpenAI() as fake:
        fake.script(rate_limited(retry_after=1))
        llm = client(fake)
        started = time.monotonic()
        result, _ = await collect(llm)
        await llm.close()
    assert result.text.startswith("Echo:")
    assert time.monotonic() - started >= 0.9
    assert len(fake.chat_requests) == 2


async def test_azure_invalid_unicode_500_is_retried():
    async with FakeOpenAI() as fake:
        fake.script(invalid_unicode(), server_error())
        llm = client(fake)
        result, _ = await collect(llm)
        await llm.close()
    assert result.finish_reason == "stop"
    assert len(fake.chat_requests) == 3


async def test_persistent_5xx_ends_as_unavailable_after_retries():
    async with FakeOpenAI() as fake:
        fake.script(server_error(), server_error(), server_error())
        llm = client(fake, max_retries=2)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "server_error"
    assert len(fake.chat_requests) == 3


async def test_prompt_content_filter_is_its_own_kind_and_not_retried():
    async with FakeOpenAI() as fake:
        fake.script(prompt_content_filter())
        llm = client(fake)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "content_filter"
    assert len(fake.chat_requests) == 1


async def test_context_length_error_is_recognised():
    async with FakeOpenAI() as fake:
        fake.script(context_length_exceeded())
        llm = client(fake)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "context_length"


async def test_completion_finish_reasons_length_and_content_filter_are_reported():
    async with FakeOpenAI() as fake:
        fake.script(
            Reply("partial", finish_reason="length"), Reply("", finish_reason="content_filter")
        )
        llm = client(fake)
        r1, _ = await collect(llm)
        r2, _ = await collect(llm)
        await llm.close()
    assert (r1.text, r1.finish_reason) == ("partial", "length")
    assert r2.finish_reason == "content_filter"


async def test_hang_past_timeout_is_a_timeout_and_never_re_sent():
    async with FakeOpenAI() as fake:
        fake.script(Hang(5), Hang(5))
        llm = client(fake, timeout=0.3, max_retries=3)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "timeout"
    # The model may still be working on it: asking again would make it start over.
    assert len(fake.chat_requests) == 1


async def test_stream_dying_half_way_is_interrupted():
    async with FakeOpenAI(reply="one two three four five six") as fake:
        fake.script(StreamDies(after_chunks=2))
        llm = client(fake)
        seen: list[str] = []

        async def on_delta(d):
            seen.append(d)

        with pytest.raises(ModelError) as err:
            await llm.stream(MSGS, on_delta)
        await llm.close()
    assert err.value.kind == "interrupted"
    assert seen


async def test_ping_makes_a_one_token_call():
    async with FakeOpenAI() as fake:
        llm = client(fake)
        assert await llm.ping() == "gpt-4o"
        await llm.close()
    assert fake.chat_requests[-1].body["max_tokens"] == 1


# ------------------------------------------------------- what real OpenAI-compatible servers do


async def test_a_refused_connection_is_unreachable_not_a_timeout():
    from tests.support.fakes.fake_openai_limits import refused_base_url

    llm = LLMClient(
        base_url=refused_base_url(),
        deployment="gpt-4o",
        api_key="k",
        max_response_tokens=16,
        temperature=None,
        max_retries=1,
        timeout=5,
    )
    with pytest.raises(ModelError) as err:
        await collect(llm)
    await llm.close()
    assert err.value.kind == "unreachable"


async def test_a_stream_ending_without_events_is_explained_by_asking_without_streaming():
    from tests.support.fakes.fake_openai import EmptyStream

    async with FakeOpenAI() as fake:
        fake.script(EmptyStream(), context_length_exceeded(2048, 2100))
        llm = client(fake)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        fake.script(EmptyStream())  # the plain request answers: that answer is the reply
        result, seen = await collect(llm)
        await llm.close()
    assert err.value.kind == "context_length"
    assert [r.body.get("stream", False) for r in fake.chat_requests] == [True, False, True, False]
    assert result.text.startswith("Echo:") and "".join(seen) == result.text


async def test_a_stream_ending_with_done_but_finish_reason_inside_delta_is_complete():
    async with FakeOpenAI(reply="All of it.", finish_in_delta=True) as fake:
        llm = client(fake)
        result, _ = await collect(llm)
        await llm.close()
    assert (result.text, result.finish_reason) == ("All of it.", "stop")


async def test_no_usage_chunk_leaves_usage_unknown():
    async with FakeOpenAI(stream_usage=False) as fake:
        llm = client(fake)
        result, _ = await collect(llm)
        await llm.close()
    assert result.prompt_tokens is None and result.completion_tokens is None
    assert result.finish_reason == "stop"


async def test_a_server_ignoring_the_cap_field_is_cut_off_on_our_side():
    from bot.tokens import TokenCounter

    long_reply = " ".join(f"word{i}" for i in range(400))
    async with FakeOpenAI(reply=long_reply, reads_cap=("max_tokens",)) as fake:
        llm = client(
            fake,
            max_response_tokens=16,
            cap_field="max_completion_tokens",
            count=TokenCounter().count,
        )
        result, _ = await collect(llm)
        probe = await llm.probe()
        await llm.close()
    assert fake.chat_requests[0].body["max_completion_tokens"] == 16
    assert result.finish_reason == "length"
    assert TokenCounter().count(result.text) <= 16 + 4 and "word399" not in result.text
    assert probe.completion_tokens > 1  # doctor's "the server ignores the reply cap"


async def test_the_whole_reply_has_a_deadline_after_which_the_text_so_far_is_the_reply():
    slow = " ".join(f"w{i}" for i in range(200))
    async with FakeOpenAI(reply=slow, tokens_per_second=20) as fake:
        llm = client(fake, timeout=5, reply_deadline=1.0)
        started = time.monotonic()
        result, seen = await collect(llm)
        elapsed = time.monotonic() - started
        await llm.close()
    assert result.finish_reason == "deadline"
    assert seen and result.text == "".join(seen) and "w199" not in result.text
    assert elapsed < 4


async def test_429_beyond_the_wait_is_rate_limited_and_does_not_wait_it_out():
    async with FakeOpenAI() as fake:
        fake.script(rate_limited(retry_after=30))
        llm = client(fake, wait_seconds=2)
        started = time.monotonic()
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "rate_limited"
    assert time.monotonic() - started < 2


async def test_entra_id_without_an_identity_is_credentials_unavailable(monkeypatch):
    import azure.identity.aio as identity
    from azure.identity import CredentialUnavailableError

    class NoIdentity(KnownTokenCredential):
        async def get_token(self, *scopes, **kwargs):
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token")

        async def get_token_info(self, *scopes, options=None):
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token")

    monkeypatch.setattr(identity, "DefaultAzureCredential", lambda **kw: NoIdentity())
    async with FakeOpenAI() as fake:
        settings = Settings(openai_base_url=fake.base_url, azure_openai_deployment="gpt-4o")
        llm = make_llm(settings)
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "credentials_unavailable"
    assert "AZURE_OPENAI_API_KEY" in err.value.detail
    assert fake.chat_requests == []


async def test_a_wrong_key_is_auth():
    async with FakeOpenAI(api_key="right") as fake:
        llm = client(fake, api_key="wrong")
        with pytest.raises(ModelError) as err:
            await collect(llm)
        await llm.close()
    assert err.value.kind == "auth" and len(fake.chat_requests) == 1


def test_the_cap_field_is_max_completion_tokens_for_azure_and_openai_max_tokens_elsewhere():
    from bot.llm import cap_field_for

    assert cap_field_for("https://res.openai.azure.com/openai/v1/") == "max_completion_tokens"
    assert cap_field_for("https://api.openai.com/v1/") == "max_completion_tokens"
    assert cap_field_for("http://127.0.0.1:8080/v1/") == "max_tokens"
    assert cap_field_for("http://127.0.0.1:8080/v1/", "max_completion_tokens") == (
        "max_completion_tokens"
    )
