"""Shared by the integration scripts: named checks that report and go on, and request bodies."""
import os
import time

RESULTS = {"passed": 0, "failed": 0}


def check(name, fn):
    """Runs fn, printing ok / FAIL with the time taken; TEST_ONLY=substring runs just the
    checks whose name contains it."""
    if os.environ.get("TEST_ONLY") and os.environ["TEST_ONLY"] not in name:
        return
    t = time.time()
    try:
        fn()
        RESULTS["passed"] += 1
        print(f"ok   {name} ({time.time() - t:.1f}s)", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)


def chat(content, **kw):
    return {"messages": [{"role": "user", "content": content}], **kw}
