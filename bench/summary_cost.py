"""Bench 8: what the running summary (HISTORY_SUMMARY) costs — extra model tokens per 100 turns,
and the answer path's time per turn with it on and off (it must add none that matters).

One long thread through the real responder, the real openai SDK and a real Redis, against the
fake model: user messages of ~60 tokens, replies of ~150, TOKEN_LIMIT 4096. Folds run in the
background as in `serve`; the bench waits for them between turns (outside the timed answer) so
each turn's answer path is measured alone. Tokens are counted as the fake model reports them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from bench.common import REDIS_URL, summary_ms, table, write
from bot.app import build_service
from bot.messages import IncomingMessage
from bot.settings import Settings
from bot.summary import FOLD_INSTRUCTIONS
from tests.support.fakes.fake_openai import FakeOpenAI, count_prompt_tokens, count_tokens
from tests.support.helpers import delete_prefix
from tests.support.recording import RecordingReply

TOKEN_LIMIT = 4096
MAX_RESPONSE = 512
USER = (
    "Turn {i}: for the migration of the billing service we agreed on step {i}; "
    "please keep track of owners, dates and the open questions we still have."
)
REPLY = (
    "Noted. Step {i} of the billing migration is recorded with its owner and date. The open "
    "questions so far are the cut-over window, the rollback plan and who signs off on the "
    "data checks. I will keep them in mind and bring them up when they become relevant to "
    "the next steps of the plan we are discussing in this thread."
)


def _is_fold(messages) -> bool:
    return str(messages[0].get("content", "")).startswith(FOLD_INSTRUCTIONS[:40])


def _reply(messages) -> str:
    if _is_fold(messages):
        return "- " + " ".join(str(messages[1]["content"]).split()[:120])
    return REPLY.format(i=str(messages[-1]["content"]).split(":")[0])


def _message(i: int) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="TB",
        channel="CB",
        thread="1.1",
        user_id="UB",
        user_name="Bench",
        text=USER.format(i=i),
        message_id=f"b{i}",
        is_dm=False,
        mentions_bot=True,
    )


async def one_run(summaries: bool, turns: int) -> dict:
    prefix = f"tw-bench-sum-{uuid.uuid4().hex[:8]}:"
    async with FakeOpenAI(reply_fn=_reply) as fake:
        svc = build_service(
            Settings(
                redis_url=REDIS_URL,
                redis_key_prefix=prefix,
                openai_base_url=fake.base_url,
                azure_openai_api_key="k",
                azure_openai_deployment="gpt-4o",
                token_limit=TOKEN_LIMIT,
                max_response_tokens=MAX_RESPONSE,
                history_summary=summaries,
                summary_max_tokens=300,
            )
        )
        times = []
        try:
            for i in range(turns):
                started = time.perf_counter()
                await svc.responder.handle(_message(i), RecordingReply())
                times.append(time.perf_counter() - started)
                if svc.summarizer is not None:
                    await svc.summarizer.wait_idle(60)
        finally:
            await svc.close()
            await delete_prefix(REDIS_URL, prefix)
        answer = fold = folds = 0
        for r in fake.chat_requests:
            cost = count_prompt_tokens(r.messages) + count_tokens(_reply(r.messages))
            if _is_fold(r.messages):
                fold += cost
                folds += 1
            else:
                answer += cost
    return {
        "turns": turns,
        "answer_tokens": answer,
        "fold_tokens": fold,
        "folds": folds,
        "answer_path": summary_ms(times[5:] or times),
    }


def run(turns: int) -> dict:
    off = asyncio.run(one_run(False, turns))
    on = asyncio.run(one_run(True, turns))
    per100 = on["fold_tokens"] * 100 / turns
    return {
        "off": off,
        "on": on,
        "extra_tokens_per_100_turns": round(per100),
        "extra_share": round(on["fold_tokens"] / max(on["answer_tokens"], 1), 4),
    }


def render(d: dict) -> str:
    rows = [
        [
            name,
            r["turns"],
            f"{r['answer_tokens']:,}",
            f"{r['fold_tokens']:,} in {r['folds']} folds",
            f"p50 {r['answer_path']['p50_ms']} ms, p99 {r['answer_path']['p99_ms']} ms",
        ]
        for name, r in (("HISTORY_SUMMARY off", d["off"]), ("HISTORY_SUMMARY on", d["on"]))
    ]
    title = (
        f"Bench 8: running summary — {d['extra_tokens_per_100_turns']:,} extra model tokens "
        f"per 100 turns ({d['extra_share']:.1%} of the answers' tokens)"
    )
    return table(title, ["run", "turns", "answer tokens", "summary tokens", "answer path"], rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    data = run(30 if a.smoke else 100)
    data["smoke"] = a.smoke
    print(render(data))
    write("summary_cost", data)
    return data


if __name__ == "__main__":
    main()
