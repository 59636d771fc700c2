"""Bench 7: worst-case cost of the text passes, per KB of hostile text.

Every pass over a message's text runs in the event loop, so a pass that is quadratic in some
shape of text (16,000 spaces after a mention once cost 1.35 s) blocks every other message and
the health probes. This bench times each pass over 40,000-character texts of every hostile
shape we know of — runs of spaces and tabs around a mention, runs of `<@U…>`, of `<at>x</at>`
and of unclosed `<at>`, of backticks, asterisks, underscores, tildes, brackets, `>`, and the
Markdown that pairs them — and reports, per pass, the slowest shape: its time per KB, its time
for 40,000 characters, and how that time grew from 4,000 characters (×10 the text: ×10 is
linear, ×100 quadratic).

The passes: the Slack cleaner (`readable_text`, on what Slack delivers), the Teams cleaner
(`clean_text`, with the bot's `<at>` mention), the Markdown → mrkdwn conversion and the mention
defusing of model text. Goal: a 40,000-character message cleaned in at most 50 ms (1.25 ms/KB);
every pass linear (growth at most ×20 for ×10 the text). CPU only, no Redis.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from microsoft_agents.activity import Activity

from adapters.slack.events import readable_text
from adapters.slack.mentions import defuse_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.teams.mapping import clean_text
from bench.common import table, write

GOAL_MS_PER_MESSAGE = 50.0  # issue 12: a 40,000-character message, per cleaner
MESSAGE_CHARS = 40_000
GOAL_GROWTH = 2.0  # at most twice what linear gives (×10 the text: ×20; quadratic is ×100)
APP_ID = "00000000-0000-0000-0000-000000000b07"
BOT_AT = "<at>Threadwise</at>"

# name → (repeated unit, text before the run). Slack wire text; the Teams cleaner gets the
# same with the bot's `<at>` mention in place of `<@UBOT>`.
SHAPES: dict[str, tuple[str, str]] = {
    "spaces after a mention": (" ", "hi <@UBOT> "),
    "spaces between words": (" ", "<@UBOT> hi"),
    "spaces and tabs": (" \t", "hi <@UBOT> "),
    "<@U…> runs": ("<@U123>", "<@UBOT> "),
    "bot mentions and spaces": ("<@UBOT>  ", ""),
    "<at>x</at> runs": ("<at>x</at>", "<@UBOT> "),
    "unclosed <at> runs": ("<at>", "<@UBOT> "),
    "<!here> runs": ("<!here>", "<@UBOT> "),
    "backticks": ("`", "<@UBOT> "),
    "backtick words": ("` ", "<@UBOT> "),
    "asterisks": ("*", "<@UBOT> "),
    "asterisk words": ("*a ", "<@UBOT> "),
    "double asterisks": ("**a ", "<@UBOT> "),
    "underscores": ("_a ", "<@UBOT> "),
    "tildes": ("~~a ", "<@UBOT> "),
    "brackets": ("[", "<@UBOT> "),
    "link openings": ("[a](", "<@UBOT> "),
    "parentheses": ("(", "<@UBOT> "),
    "quote marks": (">  ", "<@UBOT> "),
    "heading hashes": ("#", "# "),
    "blank lines": ("\n", "<@UBOT> "),
}


def shape_text(name: str, chars: int) -> str:
    unit, head = SHAPES[name]
    return head + unit * ((chars - len(head) - 1) // len(unit)) + "x"


def teams_activity(text: str) -> Activity:
    """A group-chat message that @mentions the bot, as Teams delivers it."""
    return Activity.model_validate(
        {
            "type": "message",
            "id": "1",
            "channelId": "msteams",
            "serviceUrl": "https://smba.trafficmanager.net/amer/",
            "from": {"id": "29:user", "aadObjectId": "user-aad", "name": "Megan"},
            "recipient": {"id": f"28:{APP_ID}", "name": "Threadwise"},
            "conversation": {"id": "19:g@thread.v2", "conversationType": "groupChat"},
            "text": text.replace("<@UBOT>", BOT_AT),
            "entities": [
                {
                    "type": "mention",
                    "text": BOT_AT,
                    "mentioned": {"id": f"28:{APP_ID}", "name": "Threadwise"},
                }
            ],
        }
    )


# pass name → (prepare the input once, untimed; the timed call on it)
Pass = tuple[Callable[[str], object], Callable[[object], object]]
PASSES: dict[str, Pass] = {
    "Slack cleaner": (str, lambda t: readable_text(t, bot_user_id="UBOT", names={})),
    "Teams cleaner": (teams_activity, lambda a: clean_text(a, APP_ID)),
    "mrkdwn conversion": (str, to_mrkdwn),
    "mention defusing": (str, defuse_mentions),
}


def best_of(fn: Callable[[object], object], arg: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(passes: dict[str, Pass], small: int, large: int, repeat: int) -> dict:
    """Per pass: every shape's time at `small` and `large` characters, and the worst shape."""
    out: dict = {}
    for name, (prepare, run) in passes.items():
        rows = []
        for shape in SHAPES:
            t_small = best_of(run, prepare(shape_text(shape, small)), repeat)
            t_large = best_of(run, prepare(shape_text(shape, large)), repeat)
            rows.append(
                {
                    "shape": shape,
                    "small_ms": round(t_small * 1000, 3),
                    "large_ms": round(t_large * 1000, 3),
                    "ms_per_kb": round(t_large * 1000 / (large / 1000), 4),
                    "growth": round(t_large / max(t_small, 1e-7), 1),
                }
            )
        worst = max(rows, key=lambda r: r["large_ms"])
        out[name] = {"shapes": rows, "worst": worst}
    return out


def judge(data: dict) -> bool:
    small, large = data["chars"]
    ok = True
    for name, r in data["passes"].items():
        w = r["worst"]
        per_message = w["ms_per_kb"] * MESSAGE_CHARS / 1000
        r["ms_per_40k_chars"] = round(per_message, 2)
        r["linear"] = max(s["growth"] for s in r["shapes"]) <= GOAL_GROWTH * large / small
        r["met"] = r["linear"] and ("cleaner" not in name or per_message <= GOAL_MS_PER_MESSAGE)
        ok = ok and r["met"]
    return ok


def render(data: dict) -> str:
    rows = []
    for name, r in data["passes"].items():
        w = r["worst"]
        growth = max(s["growth"] for s in r["shapes"])
        rows.append(
            [
                name,
                w["shape"],
                f"{w['ms_per_kb']:.3f}",
                f"{r['ms_per_40k_chars']:.1f}",
                f"x{growth:g}",
                "yes" if r["met"] else "NO",
            ]
        )
    small, large = data["chars"]
    return table(
        f"Bench 7 — text passes, worst shape, best of {data['repeat']} "
        f"(growth: {small:,} → {large:,} chars)",
        ["pass", "worst shape", "ms/KB", "ms per 40k chars", "max growth", "met"],
        rows,
    )


def run(passes: dict[str, Pass], small: int, large: int, repeat: int) -> dict:
    data = {"chars": [small, large], "repeat": repeat}
    data["passes"] = measure(passes, small, large, repeat)
    data["met"] = judge(data)
    return data


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    small, large, repeat = (1_000, 4_000, 2) if a.smoke else (4_000, MESSAGE_CHARS, 5)
    data = run(PASSES, small, large, repeat)
    data["smoke"] = a.smoke
    print(render(data))
    write("text_cleaning", data)
    return data


if __name__ == "__main__":
    main()
