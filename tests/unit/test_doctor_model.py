"""`doctor`'s model check against the fake model: the setting in use named in each fix line,
and the two things a real server may hide (any model name answered, the reply cap ignored)."""

from __future__ import annotations

import pytest

from bot.doctor_model import check_model
from bot.model_errors import CREDENTIALS_FIX
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_openai_limits import refused_base_url


def settings(url: str, **kw) -> Settings:
    args = dict(openai_base_url=url, azure_openai_api_key="k", azure_openai_deployment="gpt-4o")
    args.update(kw)
    return Settings(**args)


async def test_a_server_that_checks_names_and_honours_the_cap_passes_without_warnings():
    async with FakeOpenAI(deployments=("gpt-4o",)) as fake:
        checks = await check_model(settings(fake.base_url))
    assert [(c.ok, c.warn) for c in checks] == [(True, False)]
    assert "→ gpt-4o" in checks[0].tried


async def test_a_server_answering_any_name_and_ignoring_the_cap_is_warned_about():
    async with FakeOpenAI(reads_cap=("max_completion_tokens",), reply="x " * 200) as fake:
        checks = await check_model(settings(fake.base_url))
    assert checks[0].ok is True and not checks[0].warn
    warned = [c for c in checks if c.warn]
    assert len(warned) == 2 and all(not c.required for c in warned)
    cap, names = warned
    assert "asked for 1 token (max_tokens), the server generated" in cap.tried
    assert "LLM_CAP_FIELD" in cap.fix
    assert "threadwise-doctor-no-such-deployment-" in names.tried
    assert "AZURE_OPENAI_DEPLOYMENT" in names.fix


async def test_an_unreachable_openai_base_url_is_named_not_the_azure_endpoint():
    [check] = await check_model(settings(refused_base_url()))
    assert check.ok is False
    assert "OPENAI_BASE_URL" in check.fix and "AZURE_OPENAI_ENDPOINT" not in check.fix
    assert "cannot connect" in check.fix


async def test_a_refused_key_names_the_key_setting():
    async with FakeOpenAI(api_key="right") as fake:
        [check] = await check_model(settings(fake.base_url, azure_openai_api_key="wrong"))
    assert check.ok is False and "AZURE_OPENAI_API_KEY" in check.fix
    assert "Cognitive Services" not in check.fix


@pytest.mark.parametrize("azure", [False, True])
async def test_entra_id_without_an_identity_says_so_in_one_line(monkeypatch, azure):
    import azure.identity.aio as identity
    from azure.identity import CredentialUnavailableError

    class NoIdentity:
        async def get_token(self, *scopes, **kwargs):
            raise CredentialUnavailableError("EnvironmentCredential: unavailable\nline two")

        get_token_info = get_token

        async def close(self):
            pass

    monkeypatch.setattr(identity, "DefaultAzureCredential", lambda **kw: NoIdentity())
    async with FakeOpenAI() as fake:
        if azure:
            s = Settings(azure_openai_endpoint=fake.url, azure_openai_deployment="gpt-4o")
        else:
            s = Settings(openai_base_url=fake.base_url, azure_openai_deployment="gpt-4o")
        [check] = await check_model(s)
    assert check.ok is False and check.fix == CREDENTIALS_FIX
    assert "\n" not in check.fix
