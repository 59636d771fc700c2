"""Run the benchmarks and print one summary table: `python -m bench [NAME ...] [--smoke]`.

    python -m bench                      # all of them, a few minutes on 2 cores
    python -m bench throughput           # one (or several) by name, or by number: python -m bench 2
    python -m bench --smoke              # each in a few seconds: checks they work, not the numbers

Each bench prints its own table and writes bench/results/<name>.json; the summary goes to
bench/results/summary.json (smoke runs: bench/results/smoke/, or $BENCH_RESULTS). Needs Redis
(THREADWISE_BENCH_REDIS, default redis://127.0.0.1:6379/0); bench 4 starts a private
`redis-server` when one is installed. BENCH_PROFILE=/tmp/serve.txt samples the service with
py-spy while a bench runs; `python -m bench.profile_summary /tmp/serve.txt` reads it.

Two run on their own, not in this list: `python -m bench.rate_limit_burst` (minutes of rate
windows) and `python -m bench.vs_chat_sdk` (bench 11: Threadwise beside Vercel's Chat SDK; needs
Node.js and npm).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from bench.common import machine, results_dir, table, write

BENCHES = [
    "service_overhead",
    "throughput",
    "history_cost",
    "redis_cost",
    "first_token",
    "memory",
    "text_cleaning",
    "summary_cost",
    "lean",
    "scale_out",
]


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def summary_rows(name: str, d: dict) -> list[list[str]]:
    """(bench, goal, measured, met) rows for one bench's result."""
    if name == "service_overhead":
        rows = []
        for p in ("slack", "teams"):
            if p not in d:
                continue
            r = d[p]
            j = r.get("overhead_excl_pacing") or r["overhead"]
            measured = f"p50 {j['p50_ms']} ms, p99 {j['p99_ms']} ms"
            if "overhead_excl_pacing" in r:
                measured += (
                    f" (without Teams' 1 update/s pacing; with it p50 {r['overhead']['p50_ms']} ms)"
                )
            rows.append(
                [f"1 overhead, {p}", "p50 <= 10 ms, p99 <= 40 ms", measured, _yes(r["met"])]
            )
        return rows
    if name == "throughput":
        c, s = d["capacity"], d["steady"]
        return [
            [
                "2 throughput",
                ">= 200 answered/s; ack p99 <= 50 ms at 200 msg/s; 0 dropped, 0 twice",
                f"{c['answered_per_s']}/s (service on {d['event_loop']}); ack p99 "
                f"{s['ack']['p99_ms']} ms at {s['answered_per_s']}/s (at capacity "
                f"{c['ack']['p99_ms']} ms); {d['dropped']} dropped, {d['answered_twice']} twice"
                + (f", {d['error_count']} errors" if d["error_count"] else ""),
                _yes(d["met"]),
            ]
        ]
    if name == "history_cost":
        rows = d["rows"]
        ratio = rows[-1]["ours"]["cpu_ms"] / rows[0]["ours"]["cpu_ms"]
        naive = rows[-1]["naive"]["cpu_ms"] / rows[-1]["ours"]["cpu_ms"]
        return [
            [
                "3 history cost",
                f"{rows[-1]['stored_messages']:,}-msg turn <= 2x the "
                f"{rows[0]['stored_messages']}-msg turn",
                f"{ratio:.2f}x ({rows[-1]['ours']['cpu_ms']} vs "
                f"{rows[0]['ours']['cpu_ms']} ms CPU); re-counting: {naive:,.0f}x ours",
                _yes(ratio <= 2.0),
            ]
        ]
    if name == "redis_cost":
        t = d["turns"]
        mem = {r["text_chars"]: r["overhead_per_message"] for r in d["memory"]["rows"]}
        return [
            [
                "4 Redis",
                "<= 5 round trips/turn, <= 100 B overhead/stored msg",
                f"round trips: Slack mention {t['mention']['round_trips']}, follow-up "
                f"{t['followup']['round_trips']}, DM {t['dm']['round_trips']}, Teams "
                f"{t['teams_personal']['round_trips']}; overhead "
                + ", ".join(f"{v:g} B @ {k} chars" for k, v in mem.items() if k <= 2000),
                _yes(d["met"]),
            ]
        ]
    if name == "first_token":
        return [
            [
                f"5 first token, {p}",
                f"<= first token + 50 ms = {d[p]['goal_ms']:g} ms (p95)",
                f"p50 {d[p]['event_to_first_text']['p50_ms']} ms, "
                f"p95 {d[p]['event_to_first_text']['p95_ms']} ms",
                _yes(d[p]["met"]),
            ]
            for p in ("slack", "teams")
        ]
    if name == "memory":
        pts = ", ".join(f"{p['conversations']:,}: {p['rss_mb']} MB" for p in d["points"])
        g = d["heap_growth"]
        return [
            [
                "6 memory",
                d["goal"],
                f"RSS {pts}; last step RSS {d['rss_growth_mb']:+} MB, heap blocks "
                f"{g['blocks']:+.2%}, objects {g['objects']:+.2%}",
                _yes(d["met"]),
            ]
        ]
    if name == "text_cleaning":
        p = d["passes"]
        return [
            [
                "7 text passes",
                "<= 50 ms per 40,000-char hostile message; linear",
                "; ".join(
                    f"{k} {r['worst']['ms_per_kb']:.3f} ms/KB ({r['worst']['shape']})"
                    for k, r in p.items()
                ),
                _yes(d["met"]),
            ]
        ]
    if name == "summary_cost":
        on, off = d["on"]["answer_path"], d["off"]["answer_path"]
        return [
            [
                "8 running summary",
                "no added answer-path latency; extra model tokens per 100 turns reported",
                f"{d['extra_tokens_per_100_turns']:,} tokens/100 turns "
                f"({d['extra_share']:.1%} of answers'); answer path p50 {on['p50_ms']} ms on "
                f"vs {off['p50_ms']} ms off",
                _yes(on["p50_ms"] <= off["p50_ms"] * 1.25 + 1),
            ]
        ]
    if name == "lean":
        return [
            [
                f"9 cold burst of {r['burst']:,}",
                "1 auth.test; short replies without appendStream",
                f"auth.test {r['auth_test_calls']}; mention → model p50 "
                f"{r['mention_to_model']['p50_ms']} ms, p99 {r['mention_to_model']['p99_ms']} ms; "
                f"appendStream {r['append_stream_calls']}; {r['cpu']['service_cpu_ms_per_msg']} "
                "ms CPU/answer",
                _yes(r["auth_test_calls"] == 1 and r["answered_twice"] == 0),
            ]
            for r in d["rows"]
        ]
    if name == "scale_out":
        return [
            [
                "10 scale-out",
                "throughput grows with replicas and workers; 0 lost, 0 twice, order kept",
                "; ".join(
                    f"{r['replicas']}×{r['workers']}w {r['answered_per_s']}/s" for r in d["rows"]
                ),
                _yes(d["clean"]),
            ]
        ]
    return []


def resolve(names: list[str]) -> list[str]:
    out = []
    for n in names or BENCHES:
        if n.isdigit() and 1 <= int(n) <= len(BENCHES):
            n = BENCHES[int(n) - 1]
        n = n.replace("-", "_")
        if n not in BENCHES:
            raise SystemExit(
                f"unknown bench {n!r}; choose from {', '.join(BENCHES)} (or 1-{len(BENCHES)})"
            )
        out.append(n)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"benches to run (default all): {', '.join(BENCHES)}")
    p.add_argument("--smoke", action="store_true", help="a few seconds each; numbers mean little")
    a = p.parse_args(argv)
    names = resolve(a.names)
    if a.smoke:
        os.environ.setdefault("BENCH_RESULTS", str(results_dir(smoke=True)))
    started = time.monotonic()
    rows: list[list[str]] = []
    results: dict[str, dict] = {}
    failed = []
    for name in names:
        print(f"\n=== {name}{' (smoke)' if a.smoke else ''} ===", flush=True)
        t0 = time.monotonic()
        try:
            mod = importlib.import_module(f"bench.{name}")
            data = mod.main(["--smoke"] if a.smoke else [])
        except Exception:
            traceback.print_exc()
            failed.append(name)
            rows.append([name, "-", "FAILED (see above)", "NO"])
            continue
        results[name] = data
        rows += summary_rows(name, data)
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    kind = " (SMOKE: not real numbers)" if a.smoke else ""
    title = f"Threadwise benchmarks{kind} — {when}\n{machine()}"
    print(table(title, ["bench", "goal", "measured", "met"], rows))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    write("summary", {"smoke": a.smoke, "rows": rows, "failed": failed, "benches": list(results)})
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
