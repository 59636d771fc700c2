"""Files and images in the core: what each type becomes, the limits, history and its bound."""

from __future__ import annotations

import base64

import pytest

from bot.attachments import IMAGES_KEPT, Files, images_supported
from bot.images import image_tokens, prepare_image, sniff_image
from bot.messages import Attachment, AttachmentError, IncomingMessage
from bot.store import MemoryStore, decode_message, encode_message
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_newest
from tests.support import files

COUNTER = TokenCounter()


def att(name: str, mime: str, data: bytes | Exception, size: int | None = None) -> Attachment:
    async def fetch(limit: int) -> bytes:
        if isinstance(data, Exception):
            raise data
        return data

    declared = len(data) if size is None and isinstance(data, bytes) else size
    return Attachment(name, mime, declared, fetch)


def msg(*attachments: Attachment, text: str = "look") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="1.1",
        user_id="U1",
        user_name="Ann",
        text=text,
        message_id="1.2",
        attachments=attachments,
    )


def reader(store=None, **kw) -> Files:
    store = store or MemoryStore(history_budget=100_000, history_ttl=60)
    opts = {"max_bytes": 1_000_000, "images_enabled": True, "history_ttl": 60} | kw
    return Files(COUNTER, store, **opts)


# -- the formula and the bytes


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((1024, 1024), 765), ((2048, 4096), 1105), ((4000, 3000), 765), ((100, 100), 255)],
)
def test_image_tokens_follow_openais_published_formula(size, tokens):
    assert image_tokens(*size) == tokens
    assert image_tokens(*size, detail="low") == 85


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_each_image_format_is_recognised_by_its_bytes(fmt):
    mime = "image/" + fmt.lower()
    assert sniff_image(files.image(fmt)) == mime
    assert prepare_image(files.image(fmt), mime).mime == mime


def test_a_large_image_is_shrunk_to_what_the_model_sees():
    p = prepare_image(files.image("PNG", (4000, 3000)), "image/png")
    assert (p.width, p.height) == (1024, 768) and p.tokens == 765


def test_models_that_see_images_are_known_by_name():
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "gpt-5-mini", "o1", "o3"):
        assert images_supported("auto", name, None), name
    for name in ("gpt-35-turbo", "o1-mini", "o3-mini", "mistral-large", ""):
        assert not images_supported("auto", name, None), name
    assert images_supported("auto", None, "gpt-4o")
    assert images_supported("true", None, "mistral") and not images_supported(
        "false", "gpt-4o", None
    )


# -- what each type becomes


async def test_every_readable_type_becomes_a_labelled_part():
    shared = await reader().read(
        msg(
            att("shot.png", "image/png", files.image("PNG")),
            att("photo.jpg", "image/jpeg", files.image("JPEG")),
            att("notes.md", "text/markdown", b"# Notes\n- one"),
            att("data.csv", "text/csv", b"a,b\n1,2"),
            att("conf.json", "application/json", b'{"k": 1}'),
            att("app.log", "application/octet-stream", b"ERROR boom"),
            att("main.py", "text/x-python", b"print('hi')"),
            att("report.pdf", "application/pdf", files.pdf("Invoice total 42 EUR")),
        )
    )
    assert shared.notices == []
    kinds = [p["type"] for p in shared.parts]
    assert kinds == ["image_url", "image_url"] + ["text"] * 6
    assert shared.parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert shared.parts[1]["image_url"]["detail"] == "high"
    assert "[Attached PDF: report.pdf]" in shared.parts[7]["text"]
    assert "Invoice total 42 EUR" in shared.parts[7]["text"]
    assert "ERROR boom" in shared.parts[5]["text"]
    assert shared.costs[0] == 255 and all(c > 0 for c in shared.costs)


async def test_unreadable_types_are_named_with_what_is_read():
    shared = await reader().read(msg(att("plan.docx", "application/vnd.openxmlformats", b"PK")))
    assert shared.parts == [] and "I read images (PNG, JPEG, GIF, WebP), PDFs" in shared.notices[0]


async def test_a_scanned_pdf_says_it_has_no_text():
    shared = await reader().read(msg(att("scan.pdf", "application/pdf", files.pdf(""))))
    assert shared.parts == [] and "no text I can read" in shared.notices[0]


async def test_images_off_tells_the_user_and_fetches_nothing():
    def never(limit: int) -> bytes:
        raise AssertionError("fetched")

    shared = await reader(images_enabled=False).read(
        msg(Attachment("a.png", "image/png", 9, never))
    )
    assert shared.parts == [] and "can't see images" in shared.notices[0]


# -- limits and refusals


async def test_a_file_declared_over_the_limit_is_not_downloaded():
    def never(limit: int) -> bytes:
        raise AssertionError("fetched")

    shared = await reader(max_bytes=1000).read(
        msg(Attachment("big.txt", "text/plain", 5_000_000, never))
    )
    assert shared.notices == ["I did not read big.txt: it is 5 MB and the limit is 1 KB."]


async def test_a_download_stopped_at_the_limit_is_reported_with_the_limit():
    shared = await reader(max_bytes=2_000_000).read(
        msg(att("big.log", "text/plain", AttachmentError("too_large"), size=None))
    )
    assert shared.notices == ["I did not read big.log: it is more than 2 MB, the limit."]


async def test_a_sign_in_page_is_an_error_not_a_file():
    shared = await reader().read(msg(att("shot.png", "image/png", files.SIGN_IN_PAGE)))
    assert shared.parts == [] and "web page (a sign-in page?)" in shared.notices[0]


@pytest.mark.parametrize(
    ("name", "mime", "data"),
    [
        ("shot.png", "image/png", files.image("JPEG")),
        ("shot.png", "image/png", b"GIF-not-really"),
        ("notes.txt", "text/plain", b"\x00\x01\x02binary"),
        ("doc.pdf", "application/pdf", b"plain words"),
    ],
)
async def test_bytes_that_do_not_match_the_declared_type_are_refused(name, mime, data):
    shared = await reader().read(msg(att(name, mime, data)))
    assert shared.parts == [] and "not what its type says" in shared.notices[0]


@pytest.mark.parametrize(
    ("kind", "said"), [("refused", "was refused"), ("unavailable", "no longer available")]
)
async def test_a_refused_or_gone_download_is_told(kind, said):
    shared = await reader().read(msg(att("x.txt", "text/plain", AttachmentError(kind))))
    assert said in shared.notices[0]


async def test_a_part_over_the_token_budget_is_left_out_and_the_rest_kept():
    shared = await reader().read(
        msg(att("small.txt", "text/plain", b"tiny"), att("huge.txt", "text/plain", b"word " * 5000))
    )
    fitted = shared.within(200)
    assert len(fitted.parts) == 1 and "small.txt" in fitted.parts[0]["text"]
    assert "I did not read huge.txt: it is 5,0" in fitted.notices[0]


async def test_file_names_cannot_carry_markup_or_pings():
    shared = await reader().read(msg(att("<!channel> *x*\n`y`.docx", "application/zip", b"PK")))
    assert "<!channel>" not in shared.notices[0] and "\n" not in shared.notices[0]


# -- history


def test_a_message_with_parts_survives_the_store_codec():
    m = StoredMessage("user", "see\tthis", 300, "Ann", parts=({"type": "text", "text": "a\tb"},))
    raw = encode_message(m)
    assert raw.startswith("300\tuser\tAnn*\t")
    assert decode_message(raw) == m
    plain = StoredMessage("user", "x", 5, None)
    assert decode_message(encode_message(plain)) == plain


def test_trimming_drops_a_message_with_its_attachments_as_one():
    big = StoredMessage("user", "img", 900, None, parts=({"type": "image_url"},))
    rest = [StoredMessage("assistant", "a", 10), StoredMessage("user", "q", 10)]
    kept = fit_newest([big, *rest], 500)
    assert kept == [rest[1]]  # the first kept message is a user message


async def test_images_are_kept_by_reference_and_restored_for_follow_ups():
    store = MemoryStore(history_budget=100_000, history_ttl=60)
    files_ = reader(store)
    shared = await files_.read(msg(att("shot.png", "image/png", files.image("PNG"))))
    live = StoredMessage("user", "look", 300, None, parts=tuple(shared.parts))
    kept = await files_.keep("conv", [], live, shared)
    assert kept.parts[0]["type"] == "image_ref" and "base64" not in encode_message(kept)
    restored = await files_.restore("conv", [kept])
    assert restored[0].parts == live.parts


async def test_a_conversation_keeps_at_most_images_kept_images():
    store = MemoryStore(history_budget=100_000, history_ttl=60)
    files_ = reader(store)
    history: list[StoredMessage] = []
    for i in range(IMAGES_KEPT + 2):
        png = files.image("PNG", color=(i, 0, 0))
        shared = await files_.read(msg(att(f"s{i}.png", "image/png", png)))
        live = StoredMessage("user", "x", 300, None, parts=tuple(shared.parts))
        history.append(await files_.keep("conv", history, live, shared))
    assert len({m.parts[0]["slot"] for m in history}) == IMAGES_KEPT
    restored = await files_.restore("conv", history)
    gone = [m.parts[0]["type"] for m in restored[:2]]
    assert gone == ["text", "text"] and "no longer kept" in restored[0].parts[0]["text"]
    assert all(m.parts[0]["type"] == "image_url" for m in restored[2:])
    url = restored[-1].parts[0]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == png


def test_a_stored_image_never_weighs_more_than_the_keep_bound():
    import io
    import os

    from PIL import Image

    from bot.images import KEEP_MAX_BYTES

    out = io.BytesIO()
    Image.frombytes("RGBA", (2048, 768), os.urandom(2048 * 768 * 4)).save(out, format="PNG")
    p = prepare_image(out.getvalue(), "image/png")
    assert len(out.getvalue()) > 3 * KEEP_MAX_BYTES and len(p.data) <= KEEP_MAX_BYTES
    assert (
        len(prepare_image(files.noise("JPEG", (4000, 3000)), "image/jpeg").data) <= KEEP_MAX_BYTES
    )


async def test_a_failing_fetch_of_any_kind_skips_that_file_and_keeps_the_rest():
    async def broken(limit: int) -> bytes:
        raise RuntimeError("adapter bug")

    shared = await reader().read(
        msg(Attachment("a.txt", "text/plain", 3, broken), att("b.txt", "text/plain", b"ok"))
    )
    assert shared.notices == ["I could not read a.txt."] and "ok" in shared.parts[0]["text"]
