"""Issue 14's units: the endpoint forms, missing settings at once, log levels, Entra offline."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import requests
from microsoft_agents.authentication.msal import MsalAuth

from adapters.teams.doctor import check_teams
from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, azure_resource_url
from tests.support.fixtures.teams.harness import APP_ID


@pytest.mark.parametrize(
    "given",
    [
        "https://r.openai.azure.com",
        "https://r.openai.azure.com/",
        "https://r.openai.azure.com/openai",
        "https://r.openai.azure.com/openai/v1",
        "https://r.openai.azure.com/openai/v1/",
        "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
        "?api-version=2025-01-01-preview",
    ],
)
def test_the_portals_endpoint_forms_become_the_resource_url(given):
    assert azure_resource_url(given) == "https://r.openai.azure.com"
    settings = Settings(_env_file=None, azure_openai_endpoint=given)  # type: ignore[call-arg]
    assert settings.model_base_url == "https://r.openai.azure.com/openai/v1/"


@pytest.mark.parametrize("given", ["https://r.openai.azure.com/v1/", "https://r.example/api/x"])
def test_another_path_is_refused_with_the_resource_url_to_use(given):
    with pytest.raises(ValueError, match="give the resource URL without a path"):
        azure_resource_url(given)


def test_every_missing_model_setting_is_named_in_one_error():
    with pytest.raises(SettingsError) as info:
        Settings(_env_file=None).require_model()  # type: ignore[call-arg]
    assert str(info.value).startswith(
        "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT: not set; set AZURE_OPENAI_ENDPOINT"
    )


LIBRARIES = ("slack_sdk", "aiohttp", "azure")  # they log requests (headers, bodies) at DEBUG


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in LIBRARIES}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


@pytest.mark.parametrize(("level", "libraries"), [("DEBUG", "DEBUG"), ("INFO", "WARNING")])
def test_library_loggers_follow_log_level_debug_and_stay_quiet_otherwise(
    restored_logging, level, libraries
):
    setup_logging(level, "text", stream=io.StringIO())
    for name in LIBRARIES:
        assert logging.getLevelName(logging.getLogger(name).getEffectiveLevel()) == libraries


def test_a_terminal_log_line_names_the_exception_in_one_masked_line(restored_logging):
    out = io.StringIO()
    setup_logging("ERROR", "line", ["s3cret-value"], stream=out)
    try:
        raise RuntimeError("token s3cret-value refused\nAttempted credentials:\n\tmore")
    except RuntimeError:
        logging.getLogger("threadwise.test").exception("turn failed")
    [line] = out.getvalue().splitlines()
    assert line.endswith("turn failed (RuntimeError: token *** refused)")


async def test_an_unreachable_entra_id_is_not_reported_as_refused_credentials(monkeypatch):
    async def offline(self, resource_url, scopes, force_refresh=False):
        raise requests.exceptions.ConnectionError("Failed to resolve 'login.microsoftonline.com'")

    monkeypatch.setattr(MsalAuth, "get_access_token", offline)
    check = await check_teams(
        app_id=APP_ID, app_password="pw-123456", tenant_id="contoso", app_type="SingleTenant"
    )
    assert check.ok is False
    assert check.fix.startswith("could not reach Microsoft Entra ID (ConnectionError)")
    assert "refused" not in check.fix and "network" in check.fix
