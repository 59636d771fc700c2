"""Bench 8: a burst against a small deployment — answers vs apologies under a rate limit.

30 people mention the bot at once, each in a new Slack thread, against a model deployment that
admits 2 requests per 10 s (the fake answers the rest 429 with the window's remaining time as
`Retry-After` / `retry-after-ms`, as Azure does). Counted per thread: the first finished bot
message is an answer (the model's text) or an apology, and when it came. The service runs with
its default model settings (`LLM_MAX_RETRIES=3`, `LLM_WAIT_SECONDS=180`).

`--service-root DIR` runs the service from another checkout (e.g. the code before the pacer,
`git archive <commit> | tar -x -C DIR`) against the same fakes, for a before/after figure.
Answering all 30 takes at least 14 windows (~140 s): that is the floor of the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from bench.common import table, write
from bench.stack import LOCAL_AUTH, running_stack
from bench.traffic import channel_id, mention, post_slack
from tests.support.fakes.fake_openai_limits import RateWindow
from tests.support.fakes.fake_slack import new_ts
from tests.support.stack import slack_finished

MENTIONS, PER_WINDOW, WINDOW_S, TIMEOUT_S = 30, 2, 10.0, 240.0


async def run(mentions: int, service_root: str | None) -> dict:
    window = RateWindow(requests=PER_WINDOW, window_seconds=WINDOW_S)
    env = {"LLM_MAX_RETRIES": "3"}  # the default (the harness turns retries off)
    if service_root:
        env["PYTHONPATH"] = f"{LOCAL_AUTH}:{service_root}"
    async with running_stack(model={"rate_window": window}, env=env) as st:
        threads = [(channel_id(), new_ts()) for _ in range(mentions)]
        events = [
            mention(f"question {i}", user=st.users[i % len(st.users)], channel=ch, ts=ts)
            for i, (ch, ts) in enumerate(threads)
        ]
        started = time.monotonic()
        await asyncio.gather(*(post_slack(st, ev) for ev in events))
        done_at: dict[tuple[str, str], float] = {}

        def finished(slack) -> bool:
            for key in threads:
                if key not in done_at and slack_finished(slack, *key):
                    done_at[key] = time.monotonic() - started
            return len(done_at) == len(threads)

        try:
            await st.slack.wait_for(finished, TIMEOUT_S)
        except AssertionError:
            pass  # counted below as unanswered
        wall = time.monotonic() - started
        answers, apologies, unanswered = [], [], 0
        for key in threads:
            msgs = slack_finished(st.slack, *key)
            if not msgs:
                unanswered += 1
            elif msgs[0].text.startswith("Echo:"):
                answers.append(done_at[key])
            else:
                apologies.append(done_at[key])
        statuses = len(st.slack.statuses)
        apology_text = next(
            (
                slack_finished(st.slack, *k)[0].text
                for k in threads
                if slack_finished(st.slack, *k)
                and not slack_finished(st.slack, *k)[0].text.startswith("Echo:")
            ),
            None,
        )
    return {
        "service_root": service_root or "this checkout",
        "mentions": mentions,
        "limit": f"{PER_WINDOW} requests per {WINDOW_S:g} s",
        "answers": len(answers),
        "apologies": len(apologies),
        "unanswered": unanswered,
        "last_answer_s": round(max(answers), 1) if answers else None,
        "last_apology_s": round(max(apologies), 1) if apologies else None,
        "model_requests_admitted": len(window.admitted),
        "model_requests_refused_429": window.refused,
        "status_updates": statuses,
        "apology_text": apology_text,
        "wall_s": round(wall, 1),
    }


def render(d: dict) -> str:
    return table(
        f"Burst of {d['mentions']} mentions against {d['limit']} ({d['service_root']})",
        ["answers", "apologies", "unanswered", "last answer s", "429s", "statuses", "wall s"],
        [
            [
                d["answers"],
                d["apologies"],
                d["unanswered"],
                d["last_answer_s"],
                d["model_requests_refused_429"],
                d["status_updates"],
                d["wall_s"],
            ]
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--mentions", type=int, default=MENTIONS)
    p.add_argument("--service-root", default=None, help="run the service from this checkout")
    a = p.parse_args(argv)
    root = str(Path(a.service_root).resolve()) if a.service_root else None
    data = asyncio.run(run(4 if a.smoke else a.mentions, root))
    data["smoke"] = a.smoke
    print(render(data))
    write("rate_limit_burst" + ("_before" if a.service_root else ""), data)
    return data


if __name__ == "__main__":
    main()
