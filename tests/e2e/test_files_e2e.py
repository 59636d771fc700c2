"""Files and images end to end: signed Slack events and Teams activities with attachments → a
running `threadwise serve` → the fakes' file hosts → the content parts the fake model received.

One service (both platforms, real Redis, FILES_MAX_BYTES 1 MB) serves the module; each test uses
fresh channels and conversations.
"""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
import pytest_asyncio

from tests.support import files
from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI, Reply
from tests.support.fakes.fake_slack import FakeSlack
from tests.support.stack import (
    USERS,
    Stack,
    channel,
    dm,
    mention,
    message,
    slack_thread,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 1_000_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(redis_url):
    async with FakeOpenAI() as model, FakeSlack(users=USERS) as slack, FakeConnector() as fc:
        st = Stack(
            model,
            slack,
            fc,
            redis_url,
            f"tw-files-{uuid.uuid4().hex[:8]}:",
            env_extra={"FILES_MAX_BYTES": str(LIMIT)},
        )
        try:
            await st.start()
            yield st
        finally:
            await st.close()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(stack):
    stack.reset()
    yield stack


def user_content(stack: Stack, request: int = -1) -> list | str:
    return stack.model.chat_requests[request].messages[-1]["content"]


def parts_of(content: list | str, kind: str) -> list[dict]:
    return [p for p in content if isinstance(p, dict) and p.get("type") == kind]


def image_bytes(part: dict) -> bytes:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/")
    return base64.b64decode(url.split(",", 1)[1])


# -- Slack ------------------------------------------------------------------------------------


async def test_slack_screenshot_reaches_the_model_as_an_image_and_a_follow_up_sees_it(fresh):
    st = fresh
    png = files.image("PNG", (300, 200))
    f = st.slack.files.add("error.png", png, "image/png")
    ch, root = channel(), ts()
    await st.send(mention("<@UBOT> what does this error say?", ch=ch, at=root, files=[f]))
    await slack_thread(st.slack, ch, root)
    content = user_content(st)
    assert parts_of(content, "text")[0]["text"] == "what does this error say?"
    [image] = parts_of(content, "image_url")
    assert image_bytes(image) == png and image["image_url"]["detail"] == "high"
    assert [d.token_sent for d in st.slack.files.downloads] == [True]

    # A later reply in the thread, without a mention and without the file: the model still
    # gets the screenshot with the earlier message.
    st.model.script(Reply("It was a red square."))
    await st.send(message("and what colour was it?", ch=ch, thread=root))
    await slack_thread(st.slack, ch, root, n=2)
    earlier = st.model.chat_requests[-1].messages[1]
    assert earlier["role"] == "user" and image_bytes(parts_of(earlier["content"], "image_url")[0])
    assert user_content(st) == "and what colour was it?"
    assert len(st.slack.files.downloads) == 1  # kept by the bot, not downloaded again


async def test_slack_pdf_and_text_files_reach_the_model_as_labelled_text(fresh):
    st = fresh
    shared = [
        st.slack.files.add("invoice.pdf", files.pdf("Invoice total 42 EUR"), "application/pdf"),
        st.slack.files.add("notes.md", b"# Plan\n- ship it", "text/markdown"),
        st.slack.files.add("data.csv", b"city,temp\nOslo,3", "text/csv"),
        st.slack.files.add("conf.json", b'{"retries": 3}', "application/json"),
        st.slack.files.add("server.log", b"ERROR disk full", "text/plain"),
        st.slack.files.add("main.py", b"print('hi')", "text/x-python"),
    ]
    d = dm()
    event = message("summarise these", ch=d, channel_type="im", subtype="file_share", files=shared)
    await st.send(event)
    await slack_thread(st.slack, d, None)
    texts = [p["text"] for p in parts_of(user_content(st), "text")]
    assert texts[0] == "summarise these"
    assert texts[1].startswith("[Attached PDF: invoice.pdf]") and "Invoice total 42 EUR" in texts[1]
    for name, needle in [("notes.md", "ship it"), ("data.csv", "Oslo,3"), ("server.log", "disk")]:
        assert any(t.startswith(f"[Attached text file: {name}]") and needle in t for t in texts)
    assert any("print('hi')" in t for t in texts) and any('"retries"' in t for t in texts)


async def test_slack_limits_are_told_and_the_rest_is_still_answered(fresh):
    st = fresh
    big = st.slack.files.add("huge.log", b"x" * (LIMIT + 10), "text/plain")
    liar = st.slack.files.add("liar.log", b"y" * (LIMIT + 10), "text/plain", size=100)
    budget = st.slack.files.add("book.txt", b"word " * 140_000, "text/plain")  # 140k tokens
    scan = st.slack.files.add("scan.pdf", files.pdf(""), "application/pdf")
    office = st.slack.files.add("plan.docx", b"PK\x03\x04", "application/vnd.openxmlformats")
    ok = st.slack.files.add("ok.txt", b"fine", "text/plain")
    ch, root = channel(), ts()
    event = mention("<@UBOT> read all", ch=ch, at=root, files=[big, liar, budget, scan, office, ok])
    await st.send(event)
    texts = await slack_thread(st.slack, ch, root, n=2)
    notice = texts[0]
    assert "huge.log: it is 1,000,010 bytes and the limit is 1,000,000 bytes" in notice
    assert "liar.log: it is 1,000,010 bytes and the limit is 1,000,000 bytes" in notice
    assert "book.txt: it is 140,0" in notice and "tokens" in notice
    assert "scan.pdf has no text I can read" in notice
    assert "plan.docx" in notice and "I read images (PNG, JPEG, GIF, WebP), PDFs" in notice
    kept = [p["text"] for p in parts_of(user_content(st), "text")]
    assert kept[0] == "read all" and "fine" in kept[1] and len(kept) == 2
    # The declared-too-large file was never downloaded; the liar's download stopped at the limit.
    assert big["id"] not in {d.file_id for d in st.slack.files.downloads}


async def test_slack_hidden_deleted_and_foreign_files_are_told_not_read(fresh):
    st = fresh
    hidden = st.slack.files.add("old.png", files.image(), "image/png", mode="hidden_by_limit")
    gone = st.slack.files.add("gone.txt", b"bye", "text/plain")
    st.slack.files.delete(gone["id"])
    foreign = st.slack.files.add("theirs.png", files.image(), "image/png", foreign=True)
    ch, root = channel(), ts()
    await st.send(mention("<@UBOT> look", ch=ch, at=root, files=[hidden, gone, foreign]))
    notice = (await slack_thread(st.slack, ch, root, n=2))[0]
    assert "I could not get old.png: it is no longer available" in notice
    assert "I could not get gone.txt: it is no longer available" in notice
    assert "theirs.png: I got a web page (a sign-in page?) instead of the file" in notice
    assert user_content(st) == "look"


async def test_slack_connect_file_is_looked_up_with_files_info(fresh):
    st = fresh
    f = st.slack.files.add(
        "shared.txt", b"from the other org", "text/plain", file_access="check_file_info"
    )
    ch, root = channel(), ts()
    await st.send(mention("<@UBOT> read", ch=ch, at=root, files=[f]))
    await slack_thread(st.slack, ch, root)
    assert "from the other org" in parts_of(user_content(st), "text")[1]["text"]
    assert st.slack.calls_to("files.info")


async def test_slack_a_url_in_text_is_never_fetched(fresh):
    st = fresh
    f = st.slack.files.add("secret.txt", b"do not read", "text/plain")
    ch, root = channel(), ts()
    text = f"<@UBOT> what is at <{f['url_private_download']}> and <{st.connector.url}_presigned/x>"
    await st.send(mention(text, ch=ch, at=root))
    await slack_thread(st.slack, ch, root)
    assert st.slack.files.downloads == [] and st.connector.files.downloads == []
    assert isinstance(user_content(st), str)


async def test_slack_redirect_to_another_host_is_refused_and_the_token_stays(fresh):
    st = fresh
    f = st.slack.files.add("moved.png", files.image(), "image/png")
    # The same machine under another name: a different host, which must not get the token.
    elsewhere = st.connector.url.replace("127.0.0.1", "localhost") + "_presigned/x?tempauth=1"
    st.slack.files.redirect_to(f["id"], elsewhere)
    ch, root = channel(), ts()
    await st.send(mention("<@UBOT> see", ch=ch, at=root, files=[f]))
    notice = (await slack_thread(st.slack, ch, root, n=2))[0]
    assert "I could not download moved.png: the download was refused" in notice
    assert [d.status for d in st.slack.files.downloads] == [302]
    assert st.connector.files.downloads == []


# -- Teams ------------------------------------------------------------------------------------


async def test_teams_screenshot_in_personal_chat_reaches_the_model_and_a_follow_up_sees_it(fresh):
    st = fresh
    jpeg = files.image("JPEG", (640, 480))
    act = st.activity("personal_message", text="what is on this screenshot?")
    act["attachments"] = [*act["attachments"], st.connector.files.image(jpeg, "image/jpeg")]
    assert await st.teams(act) == 200
    conv = act["conversation"]["id"]
    await teams_thread(st.connector, conv)
    [image] = parts_of(user_content(st), "image_url")
    assert image_bytes(image) == jpeg
    assert [ok for _, ok in st.connector.files.downloads] == [True]  # with the bot's token

    await st.teams(st.follow_up(act, "is it a dialog box?") | {"attachments": []})
    await teams_thread(st.connector, conv, n=2)
    earlier = st.model.chat_requests[-1].messages[1]
    assert image_bytes(parts_of(earlier["content"], "image_url")[0]) == jpeg


async def test_teams_pasted_image_alone_is_answered(fresh):
    st = fresh
    act = st.activity("personal_message", text="")
    act["attachments"] = [st.connector.files.image(files.image("PNG"), "image/*")]
    await st.teams(act)
    await teams_thread(st.connector, act["conversation"]["id"])
    content = user_content(st)
    assert [p["type"] for p in content] == ["image_url"]


async def test_teams_file_in_personal_chat_is_fetched_presigned_without_the_token(fresh):
    st = fresh
    act = st.activity("personal_message", text="what is the total?")
    pdf = st.connector.files.file("invoice.pdf", files.pdf("Total due 99 EUR"), "pdf")
    act["attachments"] = [pdf]
    await st.teams(act)
    await teams_thread(st.connector, act["conversation"]["id"])
    assert "Total due 99 EUR" in parts_of(user_content(st), "text")[1]["text"]
    assert st.connector.files.leaked == [] and len(st.connector.files.downloads) == 1


async def test_teams_image_on_another_host_is_not_fetched(fresh):
    st = fresh
    act = st.activity("personal_message", text="and this?")
    image = st.connector.files.image(files.image(), "image/png")
    image["contentUrl"] = image["contentUrl"].replace("127.0.0.1", "localhost")
    act["attachments"] = [image]
    await st.teams(act)
    texts = await teams_thread(st.connector, act["conversation"]["id"], n=2)
    assert "the download was refused" in texts[0]
    assert st.connector.files.downloads == [] and user_content(st) == "and this?"


async def test_nothing_readable_and_no_text_gets_only_the_notice(fresh):
    st = fresh
    f = st.slack.files.add("song.mp3", b"ID3....", "audio/mpeg")
    d = dm()
    await st.send(message("", ch=d, channel_type="im", subtype="file_share", files=[f]))
    texts = await slack_thread(st.slack, d, None)
    assert "I can't read song.mp3 (audio/mpeg)" in texts[0]
    await asyncio.sleep(0.5)
    assert st.model.chat_requests == []


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
async def test_every_image_format_reaches_the_model(fresh, fmt):
    st = fresh
    data = files.image(fmt)
    f = st.slack.files.add(f"pic.{fmt.lower()}", data, f"image/{fmt.lower()}")
    ch, root = channel(), ts()
    await st.send(mention("<@UBOT> ?", ch=ch, at=root, files=[f]))
    await slack_thread(st.slack, ch, root)
    assert image_bytes(parts_of(user_content(st), "image_url")[0]) == data


async def test_teams_image_pasted_in_a_group_chat_mention_reaches_the_model(fresh):
    st = fresh
    png = files.image("PNG", (120, 90))
    act = st.activity("group_chat_mention")
    act["attachments"] = [*act["attachments"], st.connector.files.image(png, "image/png")]
    await st.teams(act)
    await teams_thread(st.connector, act["conversation"]["id"])
    assert image_bytes(parts_of(user_content(st), "image_url")[0]) == png


async def test_a_model_without_vision_is_not_sent_images_and_the_user_is_told(fresh):
    st = fresh
    blind = await st.start(MODEL_SUPPORTS_IMAGES="false")
    try:
        f = st.slack.files.add("chart.png", files.image(), "image/png")
        notes = st.slack.files.add("notes.txt", b"still read", "text/plain")
        ch, root = channel(), ts()
        await st.send(mention("<@UBOT> explain", ch=ch, at=root, files=[f, notes]), svc=blind)
        texts = await slack_thread(st.slack, ch, root, n=2)
        assert "I can't see images with this model, so I did not look at chart.png." in texts[0]
        content = user_content(st)
        assert parts_of(content, "image_url") == [] and "still read" in content[1]["text"]
        assert f["id"] not in {d.file_id for d in st.slack.files.downloads}
    finally:
        await blind.stop()
        st.services.remove(blind)
