"""`threadwise prompt show|set|reset|history [--scope …]`: the admin commands from a shell.

Most tests run `bot.cli.main` in-process (environment from monkeypatch, working directory a
temp dir so no `.env` leaks in); one runs `python -m bot prompt …` as operators do.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot.app import build_service
from bot.cli import main
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL
from bot.settings import Settings
from bot.store import AuditRecord
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.helpers import ROOT, base_env

OS_USER = "ops-alice"
# Settings an operator's environment might carry; none of them may change these tests.
STRAY = [
    "SYSTEM_PROMPT",
    "PROMPT_MAX_TOKENS",
    "BOT_ADMINS",
    "TOKEN_LIMIT",
    "MAX_RESPONSE_TOKENS",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_MODEL",
    "LOG_LEVEL",
    "LOG_FORMAT",
]


@pytest.fixture
def shell(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> Iterator[None]:
    """The environment `threadwise prompt` reads, and the root logger restored afterwards."""
    for name in STRAY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("LOGNAME", OS_USER)  # getpass.getuser() reads LOGNAME first
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None):
    """`threadwise prompt ARGV…` in-process → (exit code, stdout, stderr)."""
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)  # restored by pytest's capture at the end of the test
    code = main(["prompt", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def settings(redis_url: str, key_prefix: str, **kw: object) -> Settings:
    return Settings(_env_file=None, redis_url=redis_url, redis_key_prefix=key_prefix, **kw)  # type: ignore[arg-type]


def stored(redis_url: str, key_prefix: str, *scopes: str) -> dict[str, str | None]:
    async def read() -> dict[str, str | None]:
        service = build_service(settings(redis_url, key_prefix), with_model=False)
        try:
            return await service.store.get_prompts(list(scopes))
        finally:
            await service.close()

    return asyncio.run(read())


def audit(redis_url: str, key_prefix: str, scope: str) -> list[AuditRecord]:
    async def read() -> list[AuditRecord]:
        service = build_service(settings(redis_url, key_prefix), with_model=False)
        try:
            return await service.store.prompt_history(scope)
        finally:
            await service.close()

    return asyncio.run(read())


MULTILINE = "*Ops rules*\n\n• be brief\n    indented `code`\n> a quote"


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("scope", ["global", "slack:T1", "slack:T1:C1", "teams:tenant-1"])
def test_prompt_set_reads_the_text_from_stdin_with_a_dash_and_keeps_it_exactly(
    shell, capsys, redis_url, key_prefix, scope
):
    code, out, err = run(capsys, "set", "-", "--scope", scope, stdin=MULTILINE + "\n")
    assert (code, err) == (0, "")
    assert "System prompt set for the" in out
    assert stored(redis_url, key_prefix, scope) == {scope: MULTILINE}


def test_prompt_set_takes_the_text_as_an_argument(shell, capsys, redis_url, key_prefix):
    code, out, _ = run(capsys, "set", "Be terse.", "--scope", "slack:T1")
    assert code == 0 and "set for the workspace scope" in out
    assert stored(redis_url, key_prefix, "slack:T1") == {"slack:T1": "Be terse."}


def test_scope_defaults_to_global(shell, capsys, redis_url, key_prefix):
    run(capsys, "set", "Everywhere.")
    assert stored(redis_url, key_prefix, GLOBAL) == {GLOBAL: "Everywhere."}


def test_prompt_show_prints_the_prompt_in_effect_at_the_scope(shell, capsys):
    run(capsys, "set", "Workspace text.", "--scope", "slack:T1")
    code, out, _ = run(capsys, "show", "--scope", "slack:T1:C1")
    assert code == 0
    assert out == "System prompt in effect here (from the workspace scope):\n> Workspace text.\n"


def test_prompt_reset_removes_the_scope_and_the_next_one_applies(
    shell, capsys, redis_url, key_prefix
):
    run(capsys, "set", "Global text.", "--scope", "global")
    run(capsys, "set", "Channel text.", "--scope", "slack:T1:C1")
    code, out, _ = run(capsys, "reset", "--scope", "slack:T1:C1")
    assert code == 0 and "Removed the channel prompt" in out
    assert stored(redis_url, key_prefix, "slack:T1:C1") == {"slack:T1:C1": None}
    assert "> Global text." in run(capsys, "show", "--scope", "slack:T1:C1")[1]


def test_the_audit_records_the_shell_user_as_cli_and_the_os_user(
    shell, capsys, redis_url, key_prefix
):
    run(capsys, "set", "First.", "--scope", "slack:T1")
    run(capsys, "set", "Second.", "--scope", "slack:T1")
    code, out, _ = run(capsys, "history", "--scope", "slack:T1")
    assert code == 0
    assert f"(cli:{OS_USER}) set:\n> Second." in out
    assert out.index("> Second.") < out.index("> First.")
    records = audit(redis_url, key_prefix, "slack:T1")
    assert [(r.who, r.action, r.old, r.new) for r in records] == [
        (f"cli:{OS_USER}", "set", "First.", "Second."),
        (f"cli:{OS_USER}", "set", None, "First."),
    ]


@pytest.mark.parametrize("scope", ["slack", "slack:", ":T1", "slack::C1", ""])
def test_a_bad_scope_is_a_one_line_error_with_exit_code_2(
    shell, capsys, redis_url, key_prefix, scope
):
    code, out, err = run(capsys, "set", "Nope.", "--scope", scope)
    assert code == 2 and out == ""
    assert err.startswith("threadwise: --scope:") and err.count("\n") == 1
    assert audit(redis_url, key_prefix, scope) == []


def test_show_reset_and_history_take_no_text(shell, capsys):
    code, out, err = run(capsys, "show", "extra")
    assert (code, out) == (2, "")
    assert err.startswith("usage: threadwise prompt ")
    assert err.endswith("threadwise prompt: error: prompt show takes no text (got 'extra')\n")


def test_a_prompt_set_from_the_shell_is_what_the_chat_sends_next(
    shell, capsys, redis_url, key_prefix
):
    run(capsys, "set", "-", "--scope", "slack:T1:C1", stdin=MULTILINE)

    async def chat() -> list[dict]:
        async with FakeOpenAI() as fake:
            service = build_service(
                settings(
                    redis_url,
                    key_prefix,
                    openai_base_url=fake.base_url,
                    azure_openai_api_key="k",
                    azure_openai_deployment="gpt-4o",
                )
            )
            try:
                message = IncomingMessage(
                    "slack", "T1", "C1", "1.1", "U1", "Ann", "hello", "m1", is_dm=False
                )
                await service.responder.handle(message, _Silent())
            finally:
                await service.close()
            return fake.last_messages()

    assert asyncio.run(chat())[0] == {"role": "system", "content": MULTILINE}


class _Silent:
    async def typing(self) -> None:
        return None

    async def send(self, text: str) -> None:
        return None

    def stream(self) -> _Silent:
        return self

    async def append(self, text: str) -> None:
        return None

    async def finish(self, text: str, *, answer: object = None) -> None:
        return None


def test_threadwise_prompt_as_a_subprocess(redis_url, key_prefix, tmp_path):
    """The real entry point: `python -m bot prompt …`, from a directory with no `.env`."""
    env = base_env(REDIS_URL=redis_url, REDIS_KEY_PREFIX=key_prefix, LOGNAME=OS_USER)

    def threadwise(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "prompt", *argv],
            input=stdin,
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = threadwise("set", "-", "--scope", "slack:T1:C1", stdin=MULTILINE)
    assert done.returncode == 0, done.stderr
    assert stored(redis_url, key_prefix, "slack:T1:C1") == {"slack:T1:C1": MULTILINE}
    assert audit(redis_url, key_prefix, "slack:T1:C1")[0].who == f"cli:{OS_USER}"

    bad = threadwise("show", "--scope", "slack")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("threadwise: --scope:") and bad.stderr.count("\n") == 1


# ---------------------------------------------------- scope validation and exit codes


@pytest.mark.parametrize("scope", ["bogus:T1", "Slack:T1:C1", "global:x"])
def test_an_unknown_platform_in_the_scope_is_refused(shell, capsys, scope):
    code, _, err = run(capsys, "set", "Nope.", "--scope", scope)
    assert code == 2 and err.startswith("threadwise: --scope:")


def test_a_teams_channel_scope_can_be_named(shell, capsys, redis_url, key_prefix):
    scope = "teams:tenant-1:19:general@thread.tacv2"
    code, _, _ = run(capsys, "set", "For #general.", "--scope", scope)
    assert code == 0
    assert stored(redis_url, key_prefix, scope) == {scope: "For #general."}


def test_a_refused_set_exits_non_zero(shell, capsys, monkeypatch):
    monkeypatch.setenv("PROMPT_MAX_TOKENS", "5")
    code, out, _ = run(capsys, "set", "one two three four five six seven eight")
    assert "Nothing changed" in out
    assert code != 0


# ------------------------------------------------- words and options in any order (issue 14)


def test_the_readmes_example_reads_the_prompt_from_stdin_after_the_scope(
    shell, capsys, redis_url, key_prefix
):
    code, _, err = run(capsys, "set", "--scope", "slack:T024BE7LD", "-", stdin=MULTILINE)
    assert (code, err) == (0, ""), err
    assert stored(redis_url, key_prefix, "slack:T024BE7LD") == {"slack:T024BE7LD": MULTILINE}


@pytest.mark.parametrize(
    "argv",
    [
        ["set", "--scope", "slack:T1", "Hello"],
        ["--scope", "slack:T1", "set", "Hello"],
        ["set", "Hello", "--scope", "slack:T1"],
    ],
)
def test_options_may_come_anywhere_among_the_words(shell, capsys, redis_url, key_prefix, argv):
    code, _, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert stored(redis_url, key_prefix, "slack:T1") == {"slack:T1": "Hello"}


def test_unquoted_words_are_the_prompt_as_in_chat(shell, capsys, redis_url, key_prefix):
    code, _, _ = run(capsys, "set", "Be", "very", "--scope", "slack:T1", "brief")
    assert code == 0
    assert stored(redis_url, key_prefix, "slack:T1") == {"slack:T1": "Be very brief"}
    run(capsys, "set", "Be", "very", "brief")
    assert stored(redis_url, key_prefix, GLOBAL) == {GLOBAL: "Be very brief"}


@pytest.mark.parametrize("argv", [["set", "--bogus", "x"], ["sett", "x"], ["show", "--scope"]])
def test_a_usage_error_shows_the_prompt_usage(shell, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("usage: threadwise prompt ")
    assert "threadwise prompt: error:" in err


@pytest.mark.parametrize("action", ["set", "reset"])
def test_a_change_without_redis_is_refused_in_one_line(shell, capsys, monkeypatch, action):
    monkeypatch.delenv("REDIS_URL")
    code, out, err = run(capsys, action, *(["Hello"] if action == "set" else []))
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith(f"threadwise: REDIS_URL: not set; `prompt {action}` changes")


@pytest.mark.parametrize("action", ["show", "history", "set"])
def test_redis_down_is_one_line_naming_the_host_not_the_password(
    shell, capsys, monkeypatch, action
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://:pw-hunter2@127.0.0.1:{port}/0")
    code, out, err = run(capsys, action, *(["Hello"] if action == "set" else []))
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith(f"threadwise: Redis at redis://127.0.0.1:{port} did not answer")
    assert "pw-hunter2" not in err
