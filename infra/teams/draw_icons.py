"""Draw the Teams app icons: `color.png` (192×192) and `outline.png` (32×32).

Teams wants a full-colour icon with the symbol inside a 96-pixel safe area on a solid
background, and an outline icon that is white on transparent. Both are drawn here from simple
shapes (a speech bubble with three dots), anti-aliased by supersampling, and written as RGBA
PNGs with the standard library only. Run it to regenerate the committed files:

    python infra/teams/draw_icons.py
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (79, 70, 229)  # #4F46E5, the manifest's accentColor
WHITE = (255, 255, 255)
SAMPLES = 4  # supersampling per axis

Shape = Callable[[float, float], bool]


def png(width: int, height: int, pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    """Encode RGBA rows as a PNG (8-bit, no interlace, filter 0)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def coverage(shape: Shape, x: int, y: int, scale: float) -> float:
    """Fraction of pixel (x, y) inside `shape`, in the 0..1 design space."""
    hits = 0
    for i in range(SAMPLES):
        for j in range(SAMPLES):
            u = (x + (i + 0.5) / SAMPLES) / scale
            v = (y + (j + 0.5) / SAMPLES) / scale
            hits += shape(u, v)
    return hits / (SAMPLES * SAMPLES)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Shape:
    def inside(u: float, v: float) -> bool:
        if not (x0 <= u <= x1 and y0 <= v <= y1):
            return False
        cx = min(max(u, x0 + r), x1 - r)
        cy = min(max(v, y0 + r), y1 - r)
        return (u - cx) ** 2 + (v - cy) ** 2 <= r * r

    return inside


def triangle(a: tuple, b: tuple, c: tuple) -> Shape:
    def side(p, q, u, v):
        return (q[0] - p[0]) * (v - p[1]) - (q[1] - p[1]) * (u - p[0])

    def inside(u: float, v: float) -> bool:
        d1, d2, d3 = side(a, b, u, v), side(b, c, u, v), side(c, a, u, v)
        neg = d1 < 0 or d2 < 0 or d3 < 0
        pos = d1 > 0 or d2 > 0 or d3 > 0
        return not (neg and pos)

    return inside


def circle(cx: float, cy: float, r: float) -> Shape:
    return lambda u, v: (u - cx) ** 2 + (v - cy) ** 2 <= r * r


def union(*shapes: Shape) -> Shape:
    return lambda u, v: any(s(u, v) for s in shapes)


def minus(a: Shape, b: Shape) -> Shape:
    return lambda u, v: a(u, v) and not b(u, v)


def bubble(left: float, top: float, right: float, bottom: float) -> Shape:
    """A speech bubble with a tail at the lower left, in design units."""
    h = bottom - top
    body = rounded_rect(left, top, right, bottom, h * 0.28)
    tail = triangle(
        (left + h * 0.22, bottom - h * 0.1),
        (left + h * 0.62, bottom - h * 0.1),
        (left + h * 0.08, bottom + h * 0.32),
    )
    return union(body, tail)


def dots(left: float, right: float, y: float, r: float) -> Shape:
    width = right - left
    return union(*(circle(left + width * f, y, r) for f in (0.28, 0.5, 0.72)))


def color_icon(size: int = 192) -> bytes:
    # Symbol within the central 96 px (0.25..0.75 of the icon), on the accent colour.
    symbol = minus(bubble(0.25, 0.29, 0.75, 0.63), dots(0.25, 0.75, 0.46, 0.04))
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            a = coverage(symbol, x, y, size)
            row.append((*(round(WHITE[k] * a + ACCENT[k] * (1 - a)) for k in range(3)), 255))
        rows.append(row)
    return png(size, size, rows)


def outline_icon(size: int = 32) -> bytes:
    # White bubble outline and dots on transparent: what Teams tints in its app bar.
    stroke = 2.2 / size
    outer = bubble(0.06, 0.12, 0.94, 0.72)
    inner = rounded_rect(0.06 + stroke, 0.12 + stroke, 0.94 - stroke, 0.72 - stroke, 0.14)
    symbol = union(minus(outer, inner), dots(0.06, 0.94, 0.42, 0.075))
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            a = round(255 * coverage(symbol, x, y, size))
            row.append((*WHITE, a) if a else (0, 0, 0, 0))
        rows.append(row)
    return png(size, size, rows)


def main() -> int:
    (HERE / "color.png").write_bytes(color_icon())
    (HERE / "outline.png").write_bytes(outline_icon())
    print(f"wrote {HERE / 'color.png'} and {HERE / 'outline.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
