"""Loaded at interpreter start when this directory is on PYTHONPATH (bench 6 does that): on
SIGUSR1 the service writes the size of its Python heap — allocated pymalloc blocks and GC-tracked
objects, after a collection — to $BENCH_HEAP_OUT.<n>.json. Nothing else changes."""

import gc
import json
import os
import signal
import sys

_n = [0]


def _dump(*_):
    gc.collect()
    _n[0] += 1
    data = {"blocks": sys.getallocatedblocks(), "objects": len(gc.get_objects())}
    path = f"{os.environ['BENCH_HEAP_OUT']}.{_n[0]}.json"
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)  # the bench reads only whole files


if os.environ.get("BENCH_HEAP_OUT"):
    signal.signal(signal.SIGUSR1, _dump)

# Only the first sitecustomize on the path runs, and the service under bench also needs the local
# Bot Framework keys that tests/support/local_auth/sitecustomize.py installs: run that one too.
_LOCAL_AUTH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "support", "local_auth"
)
if os.environ.get("THREADWISE_TEST_JWKS_URL"):
    import runpy

    runpy.run_path(os.path.join(_LOCAL_AUTH, "sitecustomize.py"))
