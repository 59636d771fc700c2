"""Bench 5: time to the first visible token, Slack and Teams (personal chat).

The fake model streams: its first token 300 ms after the request arrives, then 50 tokens/s.
Measured per message, at a light steady load (5 messages/s, each a new conversation):

- event → first text: from the event sent (signed Slack request / Teams activity) to the first
  model text reaching the platform (Slack: `chat.startStream`/`appendStream` with text, or
  `chat.postMessage`; Teams: a streaming update with text, or a message);
- the goal is the model's first token + at most 50 ms: event → first text ≤ 350 ms; also shown:
  "after model token", first text − the moment the fake model emitted its first token
  (request arrival + 300 ms), i.e. what the service adds after the model spoke;
- Slack's and Teams' own progress signals (status "is thinking…", Teams' informative update)
  are not model text and do not count.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import summary_ms, table, write
from bench.stack import Stack, running_stack
from bench.tags import next_tag
from bench.traffic import channel_id, mention, paced, post_slack, post_teams, teams_activity
from tests.support.fakes.fake_slack import new_ts

FIRST_TOKEN_S, TOKENS_PER_S, RATE = 0.3, 50.0, 5.0
GOAL_EXTRA_MS = 50.0
MODEL = {"first_token_delay": FIRST_TOKEN_S, "tokens_per_second": TOKENS_PER_S}


async def slack_phase(st: Stack, n: int) -> dict:
    sent: dict[str, tuple[float, tuple]] = {}

    async def one(i: int) -> None:
        tag = next_tag()
        ch, ts = channel_id(), new_ts()
        text = f"explain {tag} in three short sentences"
        ev = mention(text, user=st.users[i % len(st.users)], channel=ch, ts=ts)
        wait = st.slack.wait((ch, ts))
        t0 = time.monotonic()
        await post_slack(st, ev)
        sent[tag] = (t0, (ch, ts))
        await asyncio.wait_for(wait, 30)

    await paced(RATE, 5, one)  # warm-up
    sent.clear()
    await paced(RATE, n, one)
    return collect(st, sent, lambda k: st.slack.replies[k])


async def teams_phase(st: Stack, n: int) -> dict:
    sent: dict[str, tuple[float, str]] = {}

    async def one(i: int) -> None:
        tag = next_tag()
        act = teams_activity(st, f"explain {tag} in three short sentences")
        conv = act["conversation"]["id"]
        wait = st.teams.wait(conv)
        t0 = time.monotonic()
        await post_teams(st, act)
        sent[tag] = (t0, conv)
        await asyncio.wait_for(wait, 30)

    await paced(RATE, 5, one)
    sent.clear()
    await paced(RATE, n, one)
    return collect(st, sent, lambda k: st.teams.replies[k])


def collect(st: Stack, sent: dict, reply_of) -> dict:
    total, after_model, to_request = [], [], []
    for tag, (t0, key) in sent.items():
        r = reply_of(key)
        call = st.model.calls.get(tag)
        if r.first_text is None or call is None:
            continue
        total.append(r.first_text - t0)
        after_model.append(r.first_text - call.first_token)
        to_request.append(call.started - t0)
    event = summary_ms(total)
    goal_ms = FIRST_TOKEN_S * 1000 + GOAL_EXTRA_MS
    return {
        "messages": len(sent),
        "measured": len(total),
        "event_to_first_text": event,
        "after_model_token": summary_ms(after_model),
        "event_to_model_request": summary_ms(to_request),
        "goal_ms": goal_ms,
        "met": len(total) == len(sent) and event["p95_ms"] <= goal_ms,
    }


async def run(n: int) -> dict:
    out: dict = {"model": MODEL, "rate_per_s": RATE}
    async with running_stack(model=MODEL) as st:
        out["slack"] = await slack_phase(st, n)
        out["teams"] = await teams_phase(st, n)
    out["goal"] = (
        f"first token ({FIRST_TOKEN_S * 1000:g} ms) + <= {GOAL_EXTRA_MS:g} ms, at p95, "
        "event to first text"
    )
    out["met"] = out["slack"]["met"] and out["teams"]["met"]
    return out


def render(d: dict) -> str:
    rows = []
    for p in ("slack", "teams"):
        r = d[p]
        e, a, q = r["event_to_first_text"], r["after_model_token"], r["event_to_model_request"]
        rows.append(
            [
                p,
                f"{r['measured']}/{r['messages']}",
                e["p50_ms"],
                e["p95_ms"],
                e["p99_ms"],
                f"{a['p50_ms']} / {a['p95_ms']}",
                q["p50_ms"],
                "yes" if r["met"] else "NO",
            ]
        )
    return table(
        f"Time to first visible token (model: first token {FIRST_TOKEN_S * 1000:g} ms, then "
        f"{TOKENS_PER_S:g} tokens/s; ms; goal {d['goal']})",
        [
            "platform",
            "n",
            "p50",
            "p95",
            "p99",
            "after model token p50/p95",
            "event→model request p50",
            "met",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--messages", type=int, default=100)
    a = p.parse_args(argv)
    data = asyncio.run(run(8 if a.smoke else a.messages))
    data["smoke"] = a.smoke
    print(render(data))
    write("first_token", data)
    return data


if __name__ == "__main__":
    main()
