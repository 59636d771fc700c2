"""Finding personal data and secrets in text (REDACT_PII): what is found, never what it means.

Why our own patterns rather than Microsoft Presidio: Presidio 2.2's `AnalyzerEngine` loads a
spaCy model at start and downloads it when absent (offline, as this service and its CI run, it
fails with a connection error); its pattern recognisers do run alone, but `presidio-analyzer`
pulls in spaCy, thinc, numpy and more (about 390 MB installed) for a dozen regular expressions,
and it has no recognisers for the secrets this bot must keep from the model (cloud keys,
GitHub/Slack/Azure tokens, JWTs, private key blocks, connection-string passwords). The
checksums it uses (Luhn for cards, ISO 7064 mod-97 for IBANs) are a few lines each, here.

Linear time on hostile input: every pattern is anchored by a look-behind that refuses to start
inside a run of the characters it would consume, and every repetition is bounded, so each
position of the text is examined a bounded number of times per pattern (no nested unbounded
quantifiers, no backtracking across runs). Private key blocks are cut with `str.find`, at most
once per block. tests/unit/test_redact.py checks this on 100k-character hostile strings and
with a growth test.

Each finding is then checked where a checksum or format makes it reliable: cards (Luhn and a
known issuer prefix), IBANs (country length and mod-97), US SSNs (area/group/serial rules), UK
National Insurance numbers (prefix rules), Spanish DNI/NIE (check letter), IP addresses
(`ipaddress`; loopback, unspecified and netmasks are left alone), phone numbers (digit count,
and a shape that is not a date, a version or an IP address).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Kinds, in order of precedence when two findings overlap (a secret beats the e-mail inside it).
KINDS = ("SECRET", "EMAIL", "IBAN", "CARD", "NATIONAL_ID", "IP", "PHONE")
_RANK = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


# -- checks ------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro prefixes and lengths."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649:
        return n in (16, 19)
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if p2 == 62:
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58, 63, 67):
        return 12 <= n <= 19
    return False


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(value: str) -> bool:
    v = value.replace("-", "").upper()
    head = {"X": "0", "Y": "1", "Z": "2"}.get(v[0], v[0]) + v[1:-1]
    return head.isdigit() and _DNI_LETTERS[int(head) % 23] == v[-1]


def ssn_ok(value: str) -> bool:
    area, group, serial = value.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ipv4_ok(value: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or value.startswith("255."))


def ipv6_ok(value: str) -> bool:
    if value.count(":") < 3 and not ("::" in value and any(c.isdigit() for c in value)):
        return False  # `Cafe::Feed` in code, `12:30` times
    try:
        ip = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified)


_NANP = re.compile(r"(?:\(\d{3}\) ?|\d{3}([ .-]))\d{3}[ .-]\d{4}")
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def phone_ok(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    if value.startswith("+"):
        return 8 <= digits <= 15
    if _DATE_LIKE.fullmatch(value):
        return False
    # Without a country code only two shapes are taken: North American `555-123-4567` /
    # `(555) 123-4567`, and national numbers with a trunk 0 (`020 7946 0958`, `06-12345678`);
    # other groups of digits are years, amounts or ids far more often than phone numbers.
    if _NANP.fullmatch(value):
        return True
    groups = re.split(r"[ .-]", value)
    return (
        value.startswith("0")
        and 10 <= digits <= 11
        and "." not in value
        and all(len(g) >= 2 for g in groups)
    )


# -- patterns ------------------------------------------------------------------------------------

_SECRET_WHOLE = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,250}"  # Slack tokens
    r"|xapp-\d-[A-Za-z0-9-]{10,250}"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,120}"
    r"|[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"  # Microsoft Entra client secret
    r"|eyJ[A-Za-z0-9_-]{5,4000}\.eyJ[A-Za-z0-9_-]{5,8000}\.[A-Za-z0-9_-]{0,4000}"  # JWT
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{20,200}"  # OpenAI keys
    r")(?![A-Za-z0-9])"
)
# Secrets recognised by what stands before them: only the value (group 1) is replaced, so
# `postgres://app:[SECRET_1]@db/x` stays readable.
_SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{0,256}:([^\s@/]{1,256})@"
    r"|(?i:(?<![A-Za-z0-9])(?:password|pwd|accountkey|sharedaccesskey|sig)=)"
    r"([^;&\"'\s()\[\]]{4,512})"
    r"|(?i:(?<![A-Za-z0-9])aws_?secret_?access_?key[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
    r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
    r"|(?i:(?<![A-Za-z0-9])(?:password|passwd|secret|api[_-]?key|token|"
    r"ocp-apim-subscription-key|client[_-]?secret)[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
    r"((?=[^\s\"',;()\[\]]{0,255}\d)(?=[^\s\"',;()\[\]]{0,255}[A-Za-z])"
    r"[^\s\"',;()\[\]]{6,256})(?![(\[])"
)
_KEY_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY( BLOCK)?-----")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/=\s:,-]*")

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?!\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,32}(?![a-z0-9])")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
_DNI = re.compile(r"(?<![A-Za-z0-9])[XYZ0-9]\d{7}-?[A-Z](?![A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![A-Za-z0-9:.])[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}(?![A-Za-z0-9:])")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{1,8}){1,5}(?![\w])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)


def _private_keys(text: str) -> list[Finding]:
    out: list[Finding] = []
    pos = 0
    no_end_after = len(text) + 1  # once `find` says no end marker follows, none ever does
    while (m := _KEY_BEGIN.search(text, pos)) is not None:
        end = -1 if m.end() >= no_end_after else text.find("PRIVATE KEY-----", m.end())
        if end < 0:
            no_end_after = min(no_end_after, m.end())
            stop = _KEY_BODY.match(text, m.end()).end()  # an unterminated (pasted, cut) key
        else:
            stop = end + len("PRIVATE KEY-----")
            if text.rfind("-----BEGIN", m.end(), end) >= 0:
                stop = text.rfind("-----BEGIN", m.end(), end)  # the next block's start
        out.append(Finding("SECRET", m.start(), stop, text[m.start() : stop]))
        pos = max(stop, m.end())
    return out


def find_all(text: str) -> list[Finding]:
    """Every finding, overlaps resolved (earlier start, then kind precedence, then longer)."""
    found: list[Finding] = _private_keys(text) if "PRIVATE KEY" in text else []
    for m in _SECRET_WHOLE.finditer(text):
        found.append(Finding("SECRET", m.start(), m.end(), m.group()))
    for m in _SECRET_VALUE.finditer(text):
        g = next(i for i in range(1, 5) if m.group(i) is not None)
        found.append(Finding("SECRET", m.start(g), m.end(g), m.group(g)))
    if "@" in text:
        found += [Finding("EMAIL", m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]
    for m in _IBAN.finditer(text):
        if (f := _iban(m)) is not None:
            found.append(f)
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        seps = set(re.sub(r"\d", "", m.group()))
        if len(seps) <= 1 and luhn_ok(digits) and card_issuer_ok(digits):
            found.append(Finding("CARD", m.start(), m.end(), m.group()))
    for pattern, ok in ((_SSN, ssn_ok), (_NINO, None), (_DNI, dni_ok)):
        for m in pattern.finditer(text):
            if ok is None or ok(m.group()):
                found.append(Finding("NATIONAL_ID", m.start(), m.end(), m.group()))
    for m in _IPV4.finditer(text):
        if ipv4_ok(m.group()):
            found.append(Finding("IP", m.start(), m.end(), m.group()))
    if "::" in text or text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            if ipv6_ok(m.group()):
                found.append(Finding("IP", m.start(), m.end(), m.group()))
    for m in _PHONE.finditer(text):
        if phone_ok(m.group()):
            found.append(Finding("PHONE", m.start(), m.end(), m.group()))
    found.sort(key=lambda f: (f.start, _RANK[f.kind], f.start - f.end))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            prev = kept[-1]
            if _RANK[f.kind] < _RANK[prev.kind] and f.end >= prev.end:
                kept[-1] = f  # a higher-precedence finding covering the earlier one
            continue
        kept.append(f)
    return kept


def _iban(m: re.Match[str]) -> Finding | None:
    """The IBAN at the match's start: its country's length of characters, spaces skipped (a
    greedy match may run into an upper-case word after it)."""
    raw = m.group()
    want = IBAN_LENGTHS.get(raw[:2])
    if want is None:
        return None
    n = 0
    for i, c in enumerate(raw):
        if c != " ":
            n += 1
            if n == want:
                value = raw[: i + 1]
                if iban_ok(value.replace(" ", "")):
                    return Finding("IBAN", m.start(), m.start() + i + 1, value)
                return None
    return None
