"""Images for the model: what the bytes are, what they cost in tokens, and a size worth keeping.

The cost is OpenAI's published formula for the gpt-4o family (docs: "Calculating costs"):
`detail: low` is 85 tokens; `high` scales the image to fit 2048×2048, then its shortest side to
768 px, and costs 85 + 170 per 512-px tile. Images go to the model with `detail: high`, so the
count is exact for that formula (gpt-4o-mini and the o-series bill other multiples; the
budget check is then an estimate).

Pillow does the decoding, always in a worker thread (`prepare_image` is synchronous and called
through `asyncio.to_thread`): it reads the dimensions from the header, refuses decompression
bombs, and shrinks an image larger than what the model would look at anyway to that size, so
neither the request nor the history carries pixels the model discards.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

# Magic bytes of the formats the model reads (OpenAI: PNG, JPEG, WEBP, non-animated GIF).
_MAGIC: tuple[tuple[str, bytes, int], ...] = (
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF87a", 0),
    ("image/gif", b"GIF89a", 0),
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
FIT_BOX = 2048
SHORT_SIDE = 768
TILE = 512
# Larger encoded images are re-encoded even when their dimensions already fit: what a stored
# image may weigh (docs: README "Files and images").
KEEP_MAX_BYTES = 2_000_000
# Decompression-bomb guard: more pixels than this is refused before decoding.
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """The bytes are not an image of a type the model reads (or not the one declared)."""


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes start with, or None."""
    for mime, magic, at in _MAGIC:
        if data[at : at + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def high_detail_size(width: int, height: int) -> tuple[int, int]:
    """The size the model looks at in `detail: high`: within 2048², shortest side ≤ 768."""
    if width <= 0 or height <= 0:
        return 0, 0
    scale = min(1.0, FIT_BOX / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, SHORT_SIDE / min(w, h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def image_tokens(width: int, height: int, detail: str = "high") -> int:
    """OpenAI's published cost of one image (gpt-4o family)."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    w, h = high_detail_size(width, height)
    tiles = math.ceil(w / TILE) * math.ceil(h / TILE)
    return LOW_DETAIL_TOKENS + TILE_TOKENS * tiles


@dataclass(frozen=True, slots=True)
class Prepared:
    mime: str
    data: bytes
    width: int
    height: int
    tokens: int


def prepare_image(data: bytes, declared: str) -> Prepared:
    """Check `data` is the declared image type, read its size, shrink it to what the model sees.

    Synchronous and CPU-bound: call it in a worker thread. Raises ImageError.
    """
    from PIL import Image, UnidentifiedImageError

    sniffed = sniff_image(data)
    if sniffed is None:
        raise ImageError("not a PNG, JPEG, GIF or WebP image")
    if declared in IMAGE_TYPES and declared != sniffed:
        raise ImageError(f"declared {declared} but the bytes are {sniffed}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{width}×{height} pixels is more than this bot decodes")
            target = high_detail_size(width, height)
            if target == (width, height) and len(data) <= KEEP_MAX_BYTES:
                img.verify()  # a cheap structural check, no full decode
                return Prepared(sniffed, data, width, height, image_tokens(width, height))
            img.seek(0)  # first frame of an animation: what the model reads of a GIF
            img.load()
            frame = img.convert("RGBA" if _has_alpha(img) else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"unreadable image ({type(exc).__name__})") from None
    if target != (width, height):
        frame = frame.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    mime = "image/jpeg"
    if frame.mode == "RGBA":
        frame.save(out, format="PNG", optimize=True)
        mime = "image/png"
        if out.tell() > KEEP_MAX_BYTES:
            # Transparency costs more than it is worth here: flattened onto white, as JPEG.
            flat = Image.new("RGB", frame.size, (255, 255, 255))
            flat.paste(frame, mask=frame.getchannel("A"))
            frame, out, mime = flat, io.BytesIO(), "image/jpeg"
    if mime == "image/jpeg":
        frame.save(out, format="JPEG", quality=85, optimize=True)
    w, h = frame.size
    return Prepared(mime, out.getvalue(), w, h, image_tokens(w, h))


def _has_alpha(img) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
