"""The first hour (issue 14): every failure a newcomer meets names its fix, through the CLI.

Each test runs `python -m bot …` as a subprocess from an empty working directory (no `.env`)
against the fakes, or a real `threadwise serve` over HTTP.
"""

from __future__ import annotations

import json
from importlib.metadata import version

import aiohttp
import pytest

from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import DEFAULT_SIGNING_SECRET, FakeSlack
from tests.support.fakes.fake_socket_mode import FakeSocketMode
from tests.support.helpers import ServeProcess, free_port, run_cli


def model(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "LLM_MAX_RETRIES": "0",
        **extra,
    }


def dead_redis(password: str = "") -> tuple[str, str]:
    """A REDIS_URL nothing answers at, and the host:port a warning must name."""
    port = free_port()
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0", f"127.0.0.1:{port}"


# -- --help and --version --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("serve", "SIGTERM or Ctrl-C stops taking events"),
        ("chat", "Ctrl-D quits"),
        ("doctor", "apps.connections.open in Socket Mode"),
        ("prompt", "threadwise prompt set --scope slack:T024BE7LD - < prompt.md"),
    ],
)
async def test_each_command_has_a_help_text_of_its_own(tmp_path, command, says):
    code, out, err = await run_cli([command, "--help"], {}, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: threadwise {command}")
    assert says in " ".join(out.split())


async def test_version_comes_from_the_package_metadata(tmp_path):
    code, out, _ = await run_cli(["--version"], {}, cwd=tmp_path)
    assert code == 0
    assert out == f"threadwise {version('threadwise')}\n"


# -- settings ----------------------------------------------------------------------------------


async def test_missing_model_settings_are_named_at_once_with_the_env_file_looked_for(tmp_path):
    code, _, err = await run_cli(["chat"], {}, cwd=tmp_path)
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("threadwise: AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT: not set")
    assert f"{tmp_path / '.env'}, which does not exist" in line


async def test_a_bad_bot_admins_entry_is_named_once(tmp_path):
    code, _, err = await run_cli(["chat"], {"BOT_ADMINS": "slack:U1,bogus-entry"}, cwd=tmp_path)
    assert code == 2
    assert err.startswith("threadwise: BOT_ADMINS:")
    assert err.count("bogus-entry") == 1 and "slack:U1" not in err.replace("slack:<", "")


@pytest.mark.parametrize(
    "path",
    [
        "/openai/v1/",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2025-01-01-preview",
    ],
)
async def test_an_azure_endpoint_given_with_the_portals_path_reaches_the_resource(tmp_path, path):
    async with FakeOpenAI() as fake:
        resource = fake.base_url.removesuffix("/openai/v1/")
        env = {
            "AZURE_OPENAI_ENDPOINT": resource + path,
            "AZURE_OPENAI_API_KEY": "k",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        }
        code, out, err = await run_cli(["chat"], env, "hello\n", tmp_path)
    assert code == 0, err
    assert "Echo: hello" in out
    assert [r.path for r in fake.chat_requests] == ["/openai/v1/chat/completions"]


async def test_an_azure_endpoint_with_another_path_is_refused_with_the_fix(tmp_path):
    env = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/api/projects/p"}
    code, _, err = await run_cli(["chat"], env, cwd=tmp_path)
    assert code == 2
    assert err.startswith("threadwise: AZURE_OPENAI_ENDPOINT: give the resource URL without a path")
    assert "https://r.openai.azure.com" in err and "OPENAI_BASE_URL" in err


# -- chat ----------------------------------------------------------------------------------------


async def test_chat_says_on_stderr_that_the_key_was_refused_and_points_to_doctor(tmp_path):
    async with FakeOpenAI(api_key="the-right-key") as fake:
        code, out, err = await run_cli(
            ["chat"], model(fake, OPENAI_API_KEY="a-wrong-key"), "hi\n", tmp_path
        )
    assert code == 0
    [line] = err.splitlines()
    assert line.startswith("threadwise: model call failed:")
    assert "refused AZURE_OPENAI_API_KEY" in line and "threadwise doctor" in line
    assert "a-wrong-key" not in out + err
    assert len(out.splitlines()) == 2  # the banner and the apology in the conversation


async def test_chat_says_on_stderr_when_the_model_cannot_be_reached(tmp_path):
    env = {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1/",
        "OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "d",
        "LLM_MAX_RETRIES": "0",
    }
    code, _, err = await run_cli(["chat"], env, "hi\n", tmp_path)
    assert code == 0
    [line] = err.splitlines()
    assert line.startswith("threadwise: model call failed:") and "threadwise doctor" in line
    assert "127.0.0.1" in line


async def test_chat_without_a_signed_in_entra_identity_prints_one_line_not_a_traceback(tmp_path):
    env = {
        "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "AZURE_OPENAI_DEPLOYMENT": "d",
        "LLM_MAX_RETRIES": "0",
        # DefaultAzureCredential finds nothing here: no az, no environment, no identity.
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{free_port()}/msi/token",
        "IDENTITY_HEADER": "x",
    }
    code, _, err = await run_cli(["chat"], env, "hi\n", tmp_path)
    assert code == 0
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert "Entra ID" in line and "AZURE_OPENAI_API_KEY" in line and "threadwise doctor" in line


async def test_chat_logs_nothing_unless_asked_and_follows_log_level_debug(tmp_path):
    async with FakeOpenAI() as fake:
        code, _, quiet = await run_cli(["chat"], model(fake), "hi\n", tmp_path)
        assert (code, quiet) == (0, "")
        code, _, debug = await run_cli(["chat"], model(fake, LOG_LEVEL="DEBUG"), "hi\n", tmp_path)
    assert code == 0
    loggers = {line.split()[3].rstrip(":") for line in debug.splitlines() if " DEBUG " in line}
    assert "threadwise.model" in loggers, loggers  # the model's request and response
    assert "k" not in {part.strip("'\"") for part in debug.split()}  # the key is masked


async def test_chat_warns_at_start_when_redis_does_not_answer_without_the_password(tmp_path):
    url, where = dead_redis("hunter2-secret")
    async with FakeOpenAI() as fake:
        code, _, err = await run_cli(["chat"], model(fake, REDIS_URL=url), "", tmp_path)
    assert code == 0
    [line] = err.splitlines()
    assert line.startswith("threadwise: REDIS_URL: Redis at redis://" + where)
    assert "hunter2-secret" not in err


# -- serve ---------------------------------------------------------------------------------------


async def test_serve_warns_at_start_when_redis_does_not_answer(tmp_path):
    url, where = dead_redis("hunter2-secret")
    async with FakeOpenAI() as fake:
        env = model(fake, REDIS_URL=url, TEAMS_ALLOW_ANONYMOUS="true", LOG_FORMAT="json")
        async with ServeProcess(env) as svc:
            async with aiohttp.ClientSession() as http, http.get(svc.url + "/readyz") as r:
                assert r.status == 503
    records = [json.loads(x) for x in svc.lines if x.startswith("{")]
    warnings = [r["msg"] for r in records if "REDIS_URL" in r["msg"]]
    assert len(warnings) == 1 and f"redis://{where}" in warnings[0], warnings
    assert "hunter2-secret" not in svc.output()


def socket_mode_env(slack: FakeSlack, fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    slack_env = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_API_URL": slack.api_url,
    }
    return model(fake, **{**slack_env, **extra})


async def test_serve_stops_in_one_line_when_slack_refuses_the_app_token(tmp_path):
    async with FakeOpenAI() as fake, FakeSlack() as slack, FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        env = socket_mode_env(slack, fake, SLACK_APP_TOKEN="xapp-1-wrong")
        code, out, err = await run_cli(["serve"], env, cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in out + err
    assert err.splitlines()[-1] == (
        "threadwise: slack did not start: SLACK_APP_TOKEN: could not open a Socket Mode "
        "connection (invalid_auth)"
    )
    assert "xapp-1-wrong" not in out + err


async def test_serve_stops_in_one_line_when_slack_refuses_the_bot_token(tmp_path):
    async with FakeOpenAI() as fake, FakeSlack() as slack:
        env = model(
            fake,
            SLACK_BOT_TOKEN="xoxb-1-wrong",
            SLACK_SIGNING_SECRET=DEFAULT_SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
        )
        code, out, err = await run_cli(["serve"], env, cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in out + err
    assert err.splitlines()[-1] == (
        "threadwise: slack did not start: SLACK_BOT_TOKEN: Slack refused it (invalid_auth)"
    )


async def test_serve_stops_in_one_line_when_slack_cannot_be_reached(tmp_path):
    api_url = f"http://127.0.0.1:{free_port()}/api/"
    async with FakeOpenAI() as fake:
        env = {
            **model(fake),
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_APP_TOKEN": "xapp-1",
            "SLACK_API_URL": api_url,
        }
        code, out, err = await run_cli(["serve"], env, cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in out + err
    assert err.splitlines()[-1] == (
        f"threadwise: slack did not start: SLACK_API_URL: could not reach Slack at {api_url} "
        "(ClientConnectorError)"
    )


async def test_readyz_says_not_ready_while_slack_auth_test_fails(tmp_path):
    async with FakeOpenAI() as fake, FakeSlack() as slack:
        slack.fail("auth.test", error="fatal_error", times=None)
        env = model(
            fake,
            SLACK_BOT_TOKEN=slack.token,
            SLACK_SIGNING_SECRET=DEFAULT_SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
        )
        async with ServeProcess(env) as svc, aiohttp.ClientSession() as http:
            async with http.get(svc.url + "/readyz") as r:
                assert (r.status, await r.json()) == (
                    503,
                    {"status": "not ready", "reason": "slack"},
                )
            slack.reset()  # Slack answers again: the next probe asks and is ready
            async with http.get(svc.url + "/readyz") as r:
                assert r.status == 200, await r.text()


# -- doctor --------------------------------------------------------------------------------------


async def test_doctor_tries_the_socket_mode_app_token(tmp_path):
    async with FakeOpenAI() as fake, FakeSlack() as slack, FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        code, out, err = await run_cli(["doctor"], socket_mode_env(slack, fake), cwd=tmp_path)
        assert code == 0, out + err
        assert "✓ slack" in out and "apps.connections.open → ok" in out
        assert "apps.connections.open" in [c.method for c in slack.calls]
        assert not sm.open_connections  # the URL was asked for, never connected to

        env = socket_mode_env(slack, fake, SLACK_APP_TOKEN="xapp-1-wrong")
        code, out, _ = await run_cli(["doctor"], env, cwd=tmp_path)
    assert code == 1
    assert "✗ slack" in out and "Slack said invalid_auth: check SLACK_APP_TOKEN" in out


async def test_doctor_for_a_chat_only_user_shows_no_failure(tmp_path):
    async with FakeOpenAI() as fake:
        code, out, _ = await run_cli(["doctor"], model(fake), cwd=tmp_path)
    assert code == 0, out
    assert "✗" not in out
    assert "– platforms no Slack or Teams settings: `chat` works" in out
    # The fake model answers for any deployment name, which doctor rightly warns about (⚠),
    # a warning and not a failure.
    assert out.rstrip().splitlines()[-1].startswith("All required checks passed")


async def test_doctor_reports_every_missing_model_setting_and_no_settings_tick(tmp_path):
    code, out, _ = await run_cli(["doctor"], {}, cwd=tmp_path)
    assert code == 1
    assert "✓ settings" not in out
    assert "✗ settings  AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT not set" in out
    assert f"{tmp_path / '.env'}, which does not exist" in out
