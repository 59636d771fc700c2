"""Sample files for the attachment tests: real PNG/JPEG/GIF/WebP images, PDFs with and without
a text layer, a sign-in page — made in code, so no binary fixtures live in the repo."""

from __future__ import annotations

import io

SIGN_IN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in | Slack</title></head>"
    b"<body><form>Sign in to your workspace</form></body></html>"
)


def image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def noise(fmt: str = "JPEG", size: tuple[int, int] = (640, 480)) -> bytes:
    """An image of random pixels: the worst case for compression (a photo's upper bound)."""
    import os

    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, format=fmt)
    return out.getvalue()


def pdf(*pages: str) -> bytes:
    """A PDF whose pages carry `pages` as text (an empty string: a page with no text layer)."""
    objects: list[bytes] = []
    kids = []
    n_pages = len(pages)
    # 1 catalog, 2 pages, 3 font, then (page, content) pairs
    for i, text in enumerate(pages):
        page_no, content_no = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_no} 0 R")
        safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode() if text else b""
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    head = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {n_pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    body = io.BytesIO()
    body.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(head + objects, start=1):
        offsets.append(body.tell())
        body.write(f"{i} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = body.tell()
    count = len(offsets) + 1
    body.write(f"xref\n0 {count}\n0000000000 65535 f \n".encode())
    for off in offsets:
        body.write(f"{off:010d} 00000 n \n".encode())
    body.write(f"trailer\n<< /Size {count} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return body.getvalue()
