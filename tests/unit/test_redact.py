"""REDACT_PII's detection: precision and recall per type on a labelled corpus, false positives
on ordinary text, consistent placeholders, and linear time on hostile input.

The numbers printed here (run with `-s`) are the ones the README reports. Time bounds are
generous ("well bounded": what a quadratic pass would need seconds or minutes for).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.redact import KINDS, find_all, iban_ok, luhn_ok
from bot.redact_map import Placeholders, value_hash
from tests.support.redaction_corpus import (
    HELD_OUT_NEGATIVE,
    HELD_OUT_POSITIVE,
    NEGATIVE,
    POSITIVE,
    labelled,
)


def scores(samples: list[str]) -> dict[str, tuple[float, float, int]]:
    tp, fp, fn = Counter(), Counter(), Counter()
    for sample in samples:
        text, labels = labelled(sample)
        got = {(f.kind, f.start, f.end) for f in find_all(text)}
        want = set(labels)
        for kind, *_ in got - want:
            fp[kind] += 1
        for kind, *_ in want - got:
            fn[kind] += 1
        for kind, *_ in got & want:
            tp[kind] += 1
    out = {}
    for k in KINDS:
        precision = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else 1.0
        recall = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 1.0
        out[k] = (precision, recall, tp[k] + fn[k])
    return out


def report(name: str, table: dict[str, tuple[float, float, int]]) -> None:
    print(f"\n{name}: kind, precision, recall, labelled")
    for k, (p, r, n) in table.items():
        print(f"  {k:12} {p:.2f} {r:.2f} {n}")


def test_every_type_is_found_with_high_precision_and_recall_on_the_corpus():
    table = scores(POSITIVE + NEGATIVE)
    report("corpus", table)
    for kind, (precision, recall, n) in table.items():
        assert n >= 5, kind
        assert precision >= 0.95 and recall >= 0.95, (kind, precision, recall)


def test_unseen_text_is_redacted_with_useful_precision_and_recall():
    table = scores(HELD_OUT_POSITIVE + HELD_OUT_NEGATIVE)
    report("held out", table)
    for kind, (precision, recall, _) in table.items():
        assert precision >= 0.75 and recall >= 0.7, (kind, precision, recall)


def test_ordinary_text_numbers_dates_and_code_are_left_alone():
    flagged = [s for s in NEGATIVE + HELD_OUT_NEGATIVE if find_all(s)]
    rate = len(flagged) / len(NEGATIVE + HELD_OUT_NEGATIVE)
    print(f"\nordinary text: {len(flagged)} of {len(NEGATIVE + HELD_OUT_NEGATIVE)} samples flagged")
    assert rate <= 0.05, flagged


def test_checksums_reject_near_misses():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert find_all("card 4111 1111 1111 1112 and IBAN DE89370400440532013001") == []
    assert find_all("SSN 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567") == []


def test_the_same_value_keeps_its_placeholder_through_the_conversation():
    first = Placeholders("slack:T:C:1", {})
    one = first.redact("mail ann@example.com, card 4111111111111111, ann@example.com again")
    assert one.text == "mail [EMAIL_1], card [CARD_1], [EMAIL_1] again"
    # A later turn starts from what the store kept: same value, same placeholder; new ones count on.
    later = Placeholders("slack:T:C:1", one.new)
    two = later.redact("ANN@example.com or bob@example.com; card 4111-1111-1111-1111")
    assert two.text == "[EMAIL_1] or [EMAIL_2]; card [CARD_1]"
    assert list(two.new.values()) == ["[EMAIL_2]"]


def test_the_kept_mapping_holds_hashes_not_values():
    kept = Placeholders("c", {}).redact("ann@example.com +44 20 7946 0958").new
    assert "ann@example.com" not in repr(kept) and "7946" not in repr(kept)
    assert value_hash("c", "EMAIL", "Ann@Example.com") in kept
    assert value_hash("other", "EMAIL", "ann@example.com") not in kept  # salted per conversation


def test_secrets_in_connection_strings_keep_the_rest_readable():
    text = Placeholders("c", {}).redact("postgres://app:s3cr3t-Pa55@db:5432/app").text
    assert text == "postgres://app:[SECRET_1]@db:5432/app"


# -- linear time ---------------------------------------------------------------------------------

HOSTILE_UNITS = [
    "a",
    "1",
    "1 ",
    "1-",
    "1.",
    "a@",
    "a.",
    "@a.",
    ":",
    "a:",
    "1:",
    "::1",
    "AKIA",
    "ghp_",
    "eyJ",
    "eyJa.",
    "x://a:",
    "password=",
    "token: a1",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n",
    "DE89 ",
    "AB 12 ",
    "+1 ",
    "(555) ",
    "0",
    "A",
    "Q~",
]
CHARS = 100_000
BOUNDED = 2.0  # seconds for 100,000 characters: a quadratic pass needs minutes


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("unit", HOSTILE_UNITS)
def test_hostile_100k_character_text_is_scanned_in_bounded_time(unit):
    text = unit * (CHARS // len(unit))
    assert best_of(lambda: Placeholders("c", {}).redact(text), 1) < BOUNDED


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.sampled_from(HOSTILE_UNITS), pad=st.sampled_from(["", " ", "x", "\n"]))
def test_scanning_time_grows_linearly_with_length(unit, pad):
    n = 20_000  # large enough that cache and timer effects do not dominate
    small = (unit + pad) * (n // len(unit + pad))
    large = (unit + pad) * (8 * n // len(unit + pad))
    t_small = best_of(lambda: find_all(small), 3)
    t_large = best_of(lambda: find_all(large), 3)
    # 8x the text: linear is 8x the time, quadratic 64x; a floor keeps timer noise out.
    assert t_large < 24 * max(t_small, 200e-6), (unit, t_small, t_large)
