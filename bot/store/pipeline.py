"""One round trip for many Redis operations, scripts included, without redis-py's probes.

redis-py's pipelines ask SCRIPT EXISTS before every pipeline holding a script (an extra round
trip); here scripts go as EVALSHA directly and, if Redis lost its script cache (a restart),
the scripts are loaded and only the ops that failed are run again.
"""

from __future__ import annotations


def _queue(pipe, op: tuple) -> None:
    if op[0] == "script":
        _, script, keys, args = op
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    else:
        getattr(pipe, op[0])(*op[1:])


async def run_pipeline(r, ops: list[tuple]) -> list:
    """Results in op order; a failed op's result is its exception (`raise_on_error=False`).

    An op is `("script", script, keys, args)` for a registered script, else a client method's
    name and its arguments, e.g. `("hincrby", key, field, 1)`.
    """
    from redis.exceptions import NoScriptError

    async with r.pipeline(transaction=False) as pipe:
        for op in ops:
            _queue(pipe, op)
        res = await pipe.execute(raise_on_error=False)
    missing = [i for i, x in enumerate(res) if isinstance(x, NoScriptError)]
    if missing:
        for script in {ops[i][1] for i in missing}:
            await r.script_load(script.script)
        async with r.pipeline(transaction=False) as pipe:
            for i in missing:
                _queue(pipe, ops[i])
            again = await pipe.execute(raise_on_error=False)
        for i, x in zip(missing, again, strict=True):
            res[i] = x
    return res
