"""The README's worked examples, run as written (only ports and the venv's path adapted).

A README command that stopped working — a renamed setting, a flag the script lost, a model
server URL the client cannot use — fails here instead of on a newcomer's first hour.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zipfile

from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.helpers import ROOT, base_env, free_port
from tests.support.readme import command, split_env

GUID = "9b2e7c1a-4d3f-4e8a-b6c5-1f0e2d3c4b5a"


def _threadwise(words: list[str]) -> list[str]:
    """`.venv/bin/threadwise chat` → this interpreter's `-m bot chat` (the same entry point)."""
    assert words[0] == ".venv/bin/threadwise", words
    return [sys.executable, "-m", "bot", *words[1:]]


async def _chat(env: dict[str, str], argv: list[str], text: str, cwd) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=base_env(**env),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(text.encode()), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


async def test_readme_echo_model_example_runs_as_written(tmp_path):
    server_line = command("tests.support.fakes.fake_openai")
    chat_line = command("threadwise chat", "AZURE_OPENAI_DEPLOYMENT=echo")
    port = str(free_port())
    _, server_words = split_env(server_line.replace("8000", port))
    assert server_words[0] == ".venv/bin/python" and server_words[-1] == "&", server_words
    server_words = server_words[:-1]  # in the background, as the README runs it
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        *server_words[1:],
        env=base_env(),
        cwd=ROOT,  # `python -m tests.…` from the repository root, as the README says
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        ready = await asyncio.wait_for(server.stdout.readline(), 60)
        assert ready.startswith(b"READY "), ready
        env, words = split_env(chat_line.replace("8000", port))
        code, out, err = await _chat(env, _threadwise(words), "hello from the README\n", tmp_path)
    finally:
        server.terminate()
        await server.wait()
    assert code == 0, err
    assert "Echo: hello from the README" in out


async def test_readme_local_model_settings_work_against_a_llama_cpp_like_server(tmp_path):
    chat_line = command("threadwise chat", "TOKEN_LIMIT=3500")
    # llama.cpp's shapes: plain OpenAI chunks on /v1, no Azure extras, max tokens ignored.
    async with FakeOpenAI(azure=False, honor_max_tokens=False) as fake:
        env, words = split_env(chat_line.replace("127.0.0.1:8000", f"127.0.0.1:{fake.port}"))
        assert env["OPENAI_BASE_URL"].endswith("/v1")
        code, out, err = await _chat(env, _threadwise(words), "what is Redis?\n", tmp_path)
        [request] = fake.chat_requests
    assert code == 0, err
    assert "Echo: what is Redis?" in out
    assert request.path.endswith("/v1/chat/completions")
    assert request.body["model"] == env["AZURE_OPENAI_DEPLOYMENT"]
    assert request.headers["Authorization"] == f"Bearer {env['OPENAI_API_KEY']}"


async def test_readme_teams_package_command_builds_the_zip(tmp_path):
    line = command("build_package.py")
    env, words = split_env(line.replace("$MICROSOFT_APP_ID", GUID))
    assert words[:2] == [".venv/bin/python", "infra/teams/build_package.py"], words
    out = tmp_path / "pkg.zip"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / words[1]),
        *words[2:],
        "--output",
        str(out),
        env=base_env(**env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    with zipfile.ZipFile(out) as package:
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["id"] == GUID
    assert manifest["developer"]["privacyUrl"] in line
    assert manifest["developer"]["termsOfUseUrl"] in line
