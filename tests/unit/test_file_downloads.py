"""Where the adapters may download files from, and what goes with each request."""

from __future__ import annotations

import pytest
from aiohttp import web
from microsoft_agents.activity import Activity

from adapters.downloads import download
from adapters.slack.api import make_client
from adapters.slack.files import SlackFiles
from adapters.teams.attachments import TeamsFiles, file_host_allowed
from bot.messages import AttachmentError


def slack_files(api_url: str = "https://slack.com/api/") -> SlackFiles:
    return SlackFiles(make_client("xoxb-t", api_url), bot_token="xoxb-t", api_url=api_url)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.png", True),
        ("https://slack.com/files-pri/T1-F1/a.png", True),  # SLACK_API_URL's host
        ("http://files.slack.com/files-pri/T1-F1/a.png", False),  # never the token in clear
        ("https://files.slack.com.evil.example/x", False),
        ("https://user:pw@files.slack.com/x", False),
        ("https://example.com/files-pri/x", False),
        ("not a url", False),
    ],
)
def test_the_slack_token_goes_only_to_slacks_file_hosts(url, ok):
    assert slack_files().allowed(url) is ok


def test_a_local_test_slack_is_allowed_on_its_own_scheme_only():
    files = slack_files("http://127.0.0.1:9/api/")
    assert files.allowed("http://127.0.0.1:9/files-pri/T-F/download/x")
    assert not files.allowed("http://127.0.0.2:9/files-pri/T-F/download/x")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://contoso-my.sharepoint.com/personal/a/_layouts/download.aspx?t=1", True),
        ("https://x.blob.core.windows.net/c/b?sig=1", True),
        ("http://contoso-my.sharepoint.com/x", False),
        ("https://sharepoint.com.evil.example/x", False),
        ("https://smba.trafficmanager.net/amer/v3/attachments/1", False),  # the token's host
        ("https://127.0.0.1/x", False),
    ],
)
def test_teams_presigned_downloads_come_only_from_microsofts_file_hosts(url, ok):
    assert file_host_allowed(url) is ok


def _activity(attachments: list[dict], service_url="https://smba.trafficmanager.net/emea/"):
    return Activity.model_validate(
        {
            "type": "message",
            "id": "1",
            "serviceUrl": service_url,
            "conversation": {"id": "a:1"},
            "from": {"id": "29:1"},
            "attachments": attachments,
        }
    )


def test_teams_message_html_and_cards_are_not_attachments():
    files = TeamsFiles(lambda: None, anonymous=False)  # type: ignore[arg-type, return-value]
    act = _activity(
        [
            {"contentType": "text/html", "content": "<p>hi</p>"},
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": {}},
            {"contentType": "image/*", "contentUrl": "https://smba.trafficmanager.net/emea/v3/a"},
        ]
    )
    [image] = files.attachments(act)
    assert image.mimetype == "image/*"


async def test_a_teams_image_off_the_service_host_is_refused_before_any_token():
    asked: list[int] = []

    async def token() -> str:
        asked.append(1)
        return "secret"

    files = TeamsFiles(token, anonymous=False)
    act = _activity([{"contentType": "image/png", "contentUrl": "https://evil.example/a.png"}])
    [image] = files.attachments(act)
    with pytest.raises(AttachmentError) as err:
        await image.fetch(1000)
    assert err.value.kind == "refused" and asked == []


async def test_downloads_stop_at_the_limit_and_refuse_redirects_elsewhere():
    app = web.Application()

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # no Content-Length: chunked
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"x" * 10_000)
        return resp

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://localhost:1/elsewhere")

    app.router.add_get("/big", big)
    app.router.add_get("/away", away)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sent: list[str] = []

    def allowed(url: str) -> bool:
        return url.startswith(f"http://127.0.0.1:{port}/")

    def creds(url: str) -> dict[str, str]:
        sent.append(url)
        return {"Authorization": "Bearer t"}

    try:
        with pytest.raises(AttachmentError) as err:
            await download(None, f"http://127.0.0.1:{port}/big", limit=50_000, allowed=allowed)
        assert err.value.kind == "too_large"
        with pytest.raises(AttachmentError) as err:
            await download(
                None,
                f"http://127.0.0.1:{port}/away",
                limit=50_000,
                allowed=allowed,
                credentials=creds,
            )
        assert err.value.kind == "refused"
        assert sent == [f"http://127.0.0.1:{port}/away"]  # the token never went to the target
    finally:
        await runner.cleanup()
