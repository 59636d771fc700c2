"""Hostile raw bodies, methods and headers: refused (413 early), memory bounded, still answering."""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib

import pytest

from tests.support.fakes.fake_slack import event_callback, signed_headers
from tests.support.fuzz_harness import no_500s
from tests.support.stack import SECRET, figure, mention, rss_bytes, slack_thread, ts

pytestmark = pytest.mark.security

MiB = 1024 * 1024


# -- raw hostile bodies --------------------------------------------------------------------------


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def deep_in_event(n: int) -> bytes:
    inner = b'{"a":' * n + b"1" + b"}" * n
    return (
        b'{"type":"event_callback","event":{"type":"message","text":"x","blocks":' + inner + b"}}"
    )


HOSTILE = [
    ("deep array", deep(100_000), "application/json", {400}),
    ("deep object in an event", deep_in_event(50_000), "application/json", {400}),
    ("moderately deep", deep(900), "application/json", {400}),
    ("moderately deep in an event", deep_in_event(900), "application/json", {200, 400}),
    ("not UTF-8", b"\xff\xfe\xfa{\x80}", "application/json", {400}),
    ("UTF-16 JSON", '{"type":"event_callback"}'.encode("utf-16"), "application/json", {400}),
    ("BOM then JSON", b'\xef\xbb\xbf{"type":"url_verification","challenge":"c"}', "", {200, 400}),
    ("NaN and Infinity", b'{"type":"event_callback","event":NaN,"x":Infinity}', "", {400}),
    ("JSON null", b"null", "application/json", {400}),
    ("JSON number", b"1e999999", "application/json", {400}),
    ("huge integer", b'{"type":"event_callback","event":' + b"9" * 5000 + b"}", "", {400}),
    ("empty", b"", "application/json", {400}),
    ("form with broken payload", b"payload=%7B%7B", "application/x-www-form-urlencoded", {400}),
    ("form, not UTF-8", b"command=%FF%FE&text=x", "application/x-www-form-urlencoded", {200, 400}),
    ("XML", b"<?xml version='1.0'?><event/>", "application/xml", {400}),
    (
        "multipart",
        b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xyz--",
        "multipart/form-data; boundary=xyz",
        {400},
    ),
    ("nul bytes", b'{"type":"event_callback","event":{"type":"message\x00"}}', "", {200, 400}),
]


@pytest.mark.parametrize("name,body,ctype,allowed", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_are_refused_not_500(world, name, body, ctype, allowed):
    headers = signed_headers(body, SECRET, content_type=ctype)
    assert world.post("/slack/events", body, headers) in allowed
    teams_headers = {"Content-Type": ctype} if ctype else {}
    assert world.post("/api/messages", body, teams_headers) in allowed
    figure("attacks tried (hostile bodies)", 2)


def test_huge_bodies_are_refused_early_with_413(world):
    started = time.monotonic()
    for size in (MiB + 1, 8 * MiB, 64 * MiB):
        body = b'{"type":"event_callback","event":{"type":"message","text":"' + b"a" * size + b'"}}'
        for path, headers in (
            ("/slack/events", signed_headers(body, SECRET)),
            ("/api/messages", {"Content-Type": "application/json"}),
            ("/slack/events", {"Content-Type": "application/json"}),  # unsigned: 413 or 401
        ):
            status = world.post(path, body, headers)
            assert status in (413, -1) or (status == 401 and "X-Slack-Signature" not in headers)
            figure("attacks tried (huge bodies)")
    # Compressed bombs: tiny on the wire, enormous when decoded.
    bomb = gzip.compress(b"\x20" * (200 * MiB))
    deflate_bomb = zlib.compress(b"\x20" * (200 * MiB))
    for encoding, payload in (("gzip", bomb), ("deflate", deflate_bomb)):
        for path in ("/slack/events", "/api/messages"):
            headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
            if path == "/slack/events":
                headers.update(signed_headers(payload, SECRET))
                headers["Content-Encoding"] = encoding
            assert world.post(path, payload, headers) in (400, 401, 413)
            figure("attacks tried (compression bombs)")
    assert time.monotonic() - started < 30, "refusing big bodies took too long"
    world.alive()


def test_wrong_methods_and_headers_are_not_500(world):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for path in ("/slack/events", "/api/messages"):
            assert world.post(path, b"{}", {}, method) in (405,)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert world.post(path, b"{}", {}) == 405
    big_header = {"X-Junk": "a" * 20_000}
    assert world.post("/api/messages", b"{}", big_header) in (400, 431, -1)
    many = {f"X-H{i}": "v" for i in range(300)}
    assert world.post("/api/messages", b"{}", many) in (400, 431, -1)
    weird = {"Content-Type": "application/json; charset=\u00ff", "X-Slack-Signature": "v0=\u00e9"}
    assert world.post("/slack/events", b"{}", weird) in (400, 401)
    figure("attacks tried (methods and headers)", 14)
    world.alive()
    no_500s(world)


# -- memory --------------------------------------------------------------------------------------


def test_memory_stays_bounded_under_big_and_refused_bodies(world):
    ignored = {"type": "reaction_added", "x": "a" * (MiB - 1000)}
    near_limit = json.dumps(event_callback(ignored)).encode()
    assert len(near_limit) < MiB
    teams_big = json.dumps(
        {
            "type": "typing",
            "channelId": "msteams",
            "conversation": {"id": "x"},
            "serviceUrl": world.connector.url,
            "text": "b" * (MiB - 300),
        }
    ).encode()
    too_big = b"{" + b" " * (4 * MiB) + b"}"

    json_type = {"Content-Type": "application/json"}

    def burst() -> None:
        for _ in range(20):
            signed = signed_headers(near_limit, SECRET)
            assert world.post("/slack/events", near_limit, signed) == 200
            assert world.post("/api/messages", teams_big, json_type) == 200
            assert world.post("/api/messages", too_big, {}) in (413, -1)

    for _ in range(3):  # warm up: allocator arenas and caches settle after a few rounds
        burst()
    before = rss_bytes(world.svc)
    for _ in range(3):
        burst()
    grown = rss_bytes(world.svc) - before
    figure("requests fuzzed (memory check)", 360)
    print(f"\nRSS {before / MiB:.0f} MiB, grew {grown / MiB:.1f} MiB over 180 more big requests")
    assert grown < 32 * MiB, f"memory grew {grown / MiB:.0f} MiB"


def test_service_still_answers_after_the_fuzzing(world):
    ch, at = "C" + uuid.uuid4().hex[:9].upper(), ts()
    body = json.dumps(event_callback(mention("<@UBOT> still there?", ch=ch, at=at)))
    assert world.post("/slack/events", body.encode(), signed_headers(body, SECRET)) == 200
    texts = world.run(slack_thread(world.slack, ch, at, 1))
    assert texts == ["Echo: still there?"]
    world.alive()
    no_500s(world)
