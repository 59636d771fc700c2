"""`threadwise chat`, `doctor` and settings errors, run as real subprocesses."""

from __future__ import annotations

from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import DEFAULT_SIGNING_SECRET, FakeSlack
from tests.support.helpers import run_cli


async def run(args, env, stdin: str = "", cwd=None) -> tuple[int, str, str]:
    return await run_cli(args, env, stdin, cwd)


async def test_chat_streams_replies_and_remembers_the_thread_across_runs(
    redis_url, key_prefix, tmp_path
):
    async with FakeOpenAI() as fake:
        env = {
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "k",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
        }
        code, out, err = await run(["chat", "--thread", "t1"], env, "first question\n", tmp_path)
        assert code == 0, err
        assert "Echo: first question" in out
        code, out, err = await run(["chat", "--thread", "t1"], env, "second\n!help\n", tmp_path)
        assert code == 0, err
        assert "Echo: second" in out and "!reset" in out
        sent = [m["content"] for m in fake.last_messages()]
        assert sent[1:] == ["first question", "Echo: first question", "second"]
        # another thread has its own memory
        await run(["chat", "--thread", "other"], env, "hello\n", tmp_path)
        assert [m["content"] for m in fake.last_messages()][1:] == ["hello"]


async def test_chat_without_redis_uses_the_in_process_store(tmp_path):
    async with FakeOpenAI() as fake:
        env = {
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "k",
            "AZURE_OPENAI_DEPLOYMENT": "d",
        }
        code, out, _ = await run(["chat"], env, "a\nb\n", tmp_path)
    assert code == 0
    banner = out.splitlines()[0]
    assert "conversation kept for this session only (no REDIS_URL)" in banner
    assert "memory in memory" not in banner
    assert "Echo: b" in out


async def test_missing_setting_stops_with_one_line_naming_it(tmp_path):
    code, _, err = await run(["chat"], {"OPENAI_API_KEY": "k"}, "", tmp_path)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "AZURE_OPENAI_ENDPOINT" in err


async def test_invalid_setting_stops_with_one_line_naming_it(tmp_path):
    code, _, err = await run(["chat"], {"TOKEN_LIMIT": "lots"}, "", tmp_path)
    assert code == 2
    assert err.startswith("threadwise: TOKEN_LIMIT:")
    assert err.strip().count("\n") == 0


async def test_secret_values_are_not_echoed_in_setting_errors(tmp_path):
    code, _, err = await run(["chat"], {"REDIS_URL": "http://user:hunter2@x"}, "", tmp_path)
    assert code == 2 and "REDIS_URL" in err and "hunter2" not in err


async def test_serve_refuses_to_start_without_any_platform(tmp_path):
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/", "AZURE_OPENAI_DEPLOYMENT": "d"}
    code, _, err = await run(["serve"], env, "", tmp_path)
    assert code == 2
    assert "no platform configured" in err


async def test_doctor_reports_what_works_and_what_to_fix(redis_url, tmp_path):
    async with FakeOpenAI() as fake:
        env = {
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "k",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": redis_url,
        }
        code, out, _ = await run(["doctor"], env, "", tmp_path)
        assert code == 0, out
        assert "✓ redis" in out and "✓ model" in out
        env["REDIS_URL"] = "redis://127.0.0.1:9/0"
        code, out, _ = await run(["doctor"], env, "", tmp_path)
    assert code == 1
    assert "✗ redis" in out
    assert "did not answer" in out


async def test_doctor_names_the_missing_deployment(tmp_path):
    code, out, _ = await run(
        ["doctor"], {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}, "", tmp_path
    )
    assert code == 1
    assert "set AZURE_OPENAI_DEPLOYMENT" in out


async def test_doctor_checks_teams_credentials_and_names_the_fix(tmp_path):
    env = {
        "MICROSOFT_APP_ID": "00000000-0000-0000-0000-000000000001",
        "MICROSOFT_APP_PASSWORD": "not-a-real-secret-123",
        "MICROSOFT_APP_TYPE": "SingleTenant",
        "MICROSOFT_APP_TENANT_ID": "contoso.onmicrosoft.com",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "d",
    }
    code, out, err = await run(["doctor"], env, "", tmp_path)
    assert code == 1
    teams = out.split("✗ teams", 1)[1].split("\n✗", 1)[0]
    # Entra ID refuses the made-up secret; a machine without a way out cannot reach it, and
    # then doctor says so rather than blaming the credentials.
    refused = "refused the credentials" in teams and "MICROSOFT_APP_PASSWORD" in teams
    unreachable = "could not reach Microsoft Entra ID" in teams and "network" in teams
    assert refused != unreachable, teams
    assert "not-a-real-secret-123" not in out + err


def _slack_env(slack: FakeSlack, api_url: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
        "SLACK_API_URL": api_url,
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "d",
    }


async def test_doctor_calls_slack_at_the_url_serve_calls_when_the_api_url_has_no_slash(tmp_path):
    """SLACK_API_URL=https://x/api: serve calls https://x/api/auth.test, and so must doctor."""
    async with FakeSlack() as slack:
        _, out, err = await run(
            ["doctor"], _slack_env(slack, slack.api_url.rstrip("/")), "", tmp_path
        )
        assert "✓ slack     auth.test → team Fake Team" in out, out + err
        assert [c.method for c in slack.calls] == ["auth.test"]


async def test_doctor_tries_the_slack_token_with_serves_client_so_a_rate_limit_is_waited_out(
    tmp_path,
):
    async with FakeSlack() as slack:
        slack.fail("auth.test", status=429, retry_after=1)
        _, out, err = await run(["doctor"], _slack_env(slack, slack.api_url), "", tmp_path)
        assert "✓ slack     auth.test → team Fake Team" in out, out + err
        assert [c.status for c in slack.calls] == [429, 200]


async def test_doctor_names_the_missing_slack_signing_secret_as_serve_does(tmp_path):
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
    # the signing secret, not the model, is what this run is about
    code, out, _ = await run(["doctor"], env, "", tmp_path)
    assert code == 1
    assert "✗ slack     settings\n  → SLACK_SIGNING_SECRET: not set; HTTP mode needs it" in out
