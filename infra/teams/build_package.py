"""Build the Teams app package: manifest.json (app id filled in) + color.png + outline.png, zipped.

    python infra/teams/build_package.py --app-id <MICROSOFT_APP_ID> [--version 1.0.1]
        [--name "Threadwise"] [--privacy-url URL] [--terms-url URL] [--website-url URL]
        [--developer-name NAME] [--output PATH]

The app id defaults to $MICROSOFT_APP_ID. It becomes both the Teams app id and the bot id
(`${{MICROSOFT_APP_ID}}` in manifest.json). The developer's name, website, privacy and terms
URLs are what Teams shows on the app's page; manifest.json has the project's own, so an app
your organisation publishes should pass its own with the flags (each must be https). The zip
goes to infra/teams/build/threadwise-teams.zip (git-ignored) unless --output says otherwise.

Before zipping, the package is checked the way Teams' uploader checks it: a GUID app id, no
placeholder left, https developer URLs, the icons' sizes (192×192 colour, 32×32 outline that is
white on transparent), the field lengths, and the bot's scopes. Upload the zip in Teams (Apps →
Manage your apps → Upload an app) or in the Teams admin center.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
# Beside this script, not in the working directory: the zip never lands untracked in the
# repository root, and `build/` is git-ignored.
DEFAULT_OUTPUT = HERE / "build" / "threadwise-teams.zip"
# --flag → the manifest's developer field it sets.
DEVELOPER_FIELDS = {
    "privacy_url": "privacyUrl",
    "terms_url": "termsOfUseUrl",
    "website_url": "websiteUrl",
    "developer_name": "name",
}
DEVELOPER_NAME_MAX = 32  # manifest v1.22
PLACEHOLDER = "${{MICROSOFT_APP_ID}}"
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")
HTTPS_URL = re.compile(r"^https://[^\s/?#]+\.[^\s/?#]+(?:[/?#]\S*)?$")
ICONS = {"color": 192, "outline": 32}
LIMITS = {  # manifest v1.22 maximum lengths
    ("name", "short"): 30,
    ("name", "full"): 100,
    ("description", "short"): 80,
    ("description", "full"): 4000,
}


class PackageError(Exception):
    pass


def read_png(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Decode an 8-bit RGBA/RGB PNG (non-interlaced): width, height, rows of pixels."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PackageError("not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise PackageError("PNG without IHDR")
    width, height, depth, color_type, _, _, interlace = header
    channels = {6: 4, 2: 3}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise PackageError("icons must be 8-bit RGB(A), non-interlaced PNGs")
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[list[tuple[int, ...]]] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append([tuple(line[x : x + channels]) for x in range(0, stride, channels)])
        prev = line
    return width, height, rows


def check_icons(manifest: dict, folder: Path) -> dict[str, bytes]:
    icons: dict[str, bytes] = {}
    for kind, size in ICONS.items():
        name = manifest.get("icons", {}).get(kind)
        if not name or "/" in name:
            raise PackageError(f"icons.{kind} must name a file next to manifest.json")
        data = (folder / name).read_bytes()
        width, height, rows = read_png(data)
        if (width, height) != (size, size):
            raise PackageError(f"{name} is {width}×{height}; Teams wants {size}×{size}")
        if kind == "outline":
            for row in rows:
                for px in row:
                    alpha = px[3] if len(px) == 4 else 255
                    if alpha and px[:3] != (255, 255, 255):
                        raise PackageError(f"{name} must be white on a transparent background")
        icons[name] = data
    return icons


def check_manifest(manifest: dict) -> None:
    text = json.dumps(manifest)
    if PLACEHOLDER in text or "${{" in text:
        raise PackageError("manifest.json still has a ${{…}} placeholder")
    if manifest.get("manifestVersion") != "1.22":
        raise PackageError("manifestVersion must be 1.22")
    if not GUID.match(manifest.get("id", "")):
        raise PackageError("the app id must be a GUID")
    if not VERSION.match(manifest.get("version", "")):
        raise PackageError("version must look like 1.0.0")
    for (section, key), limit in LIMITS.items():
        value = manifest.get(section, {}).get(key, "")
        if not value or len(value) > limit:
            raise PackageError(f"{section}.{key} must be 1–{limit} characters")
    developer = manifest.get("developer") or {}
    for field in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        url = developer.get(field, "")
        if not HTTPS_URL.match(url):
            raise PackageError(f"developer.{field} must be an https:// URL (got {url!r})")
    if not 1 <= len(developer.get("name", "")) <= DEVELOPER_NAME_MAX:
        raise PackageError(f"developer.name must be 1–{DEVELOPER_NAME_MAX} characters")
    bots = manifest.get("bots") or []
    if len(bots) != 1 or not GUID.match(bots[0].get("botId", "")):
        raise PackageError("exactly one bot with a GUID botId is expected")
    if set(bots[0].get("scopes", [])) != {"personal", "team", "groupChat"}:
        raise PackageError("the bot's scopes must be personal, team and groupChat")
    for command_list in bots[0].get("commandLists", []):
        commands = command_list.get("commands", [])
        if len(commands) > 12:
            raise PackageError("at most 12 commands per command list")
        for command in commands:
            if len(command.get("title", "")) > 128 or len(command.get("description", "")) > 128:
                raise PackageError(f"command {command.get('title')!r}: title/description too long")


def build(
    app_id: str,
    output: Path = DEFAULT_OUTPUT,
    *,
    version: str | None = None,
    name: str | None = None,
    developer: dict[str, str] | None = None,
):
    """Write the package to `output`; `developer` overrides manifest `developer` fields."""
    app_id = app_id.strip()
    if not GUID.match(app_id):
        raise PackageError(
            f"MICROSOFT_APP_ID {app_id!r} is not a GUID (the bot's Microsoft Entra app id)"
        )
    text = MANIFEST.read_text(encoding="utf-8").replace(PLACEHOLDER, app_id.lower())
    manifest = json.loads(text)
    if version:
        manifest["version"] = version
    if name:
        manifest["name"]["short"] = name
    for field, value in (developer or {}).items():
        manifest["developer"][field] = value.strip()
    check_manifest(manifest)
    icons = check_icons(manifest, HERE)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for filename, data in icons.items():
            package.writestr(filename, data)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Threadwise Teams app package (zip).")
    parser.add_argument("--app-id", default=os.environ.get("MICROSOFT_APP_ID"))
    parser.add_argument("--version", help="app version, e.g. 1.0.1 (bump it for each upload)")
    parser.add_argument("--name", help="short name shown in Teams (default Threadwise)")
    parser.add_argument(
        "--privacy-url", help="your privacy statement (https); Teams links it on the app's page"
    )
    parser.add_argument("--terms-url", help="your terms of use (https)")
    parser.add_argument("--website-url", help="the developer's website (https)")
    parser.add_argument(
        "--developer-name", help=f"the developer shown in Teams (≤ {DEVELOPER_NAME_MAX} chars)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the zip (default: infra/teams/build/threadwise-teams.zip)",
    )
    args = parser.parse_args(argv)
    developer = {
        field: getattr(args, flag)
        for flag, field in DEVELOPER_FIELDS.items()
        if getattr(args, flag) is not None
    }
    if not args.app_id:
        print("error: pass --app-id or set MICROSOFT_APP_ID", file=sys.stderr)
        return 2
    try:
        path = build(
            args.app_id, args.output, version=args.version, name=args.name, developer=developer
        )
    except (PackageError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not {"privacyUrl", "termsOfUseUrl"} <= developer.keys():
        print(
            "note: the privacy and terms URLs are the project's own; before publishing the app "
            "to your organisation pass yours with --privacy-url and --terms-url",
            file=sys.stderr,
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
