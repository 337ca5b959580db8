"""`helm test`: web answers ready through its Service, and a job goes through a worker and back.

Run by the chart's test Pod as `python -c` in the app image (standard library only). Reads
HELM_TEST_WEB_URL (the web Service), HELM_TEST_TIMEOUT_SECONDS and, when set,
HELM_TEST_API_KEY: a token with the `enqueue` and `read` scopes; without it only readiness is
checked. Exits 0 when every check passed, 1 with the reason otherwise.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ["HELM_TEST_WEB_URL"].rstrip("/")
TOKEN = os.environ.get("HELM_TEST_API_KEY", "")
DEADLINE = time.monotonic() + float(os.environ.get("HELM_TEST_TIMEOUT_SECONDS", "120"))


def call(method, path, body=None):
    """(status, parsed JSON body or text) of one request to web."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if TOKEN:
        request.add_header("Authorization", "Bearer " + TOKEN)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def until(what, check):
    """Retry `check` (returning a result or None) every second until the deadline."""
    last = None
    while time.monotonic() < DEADLINE:
        try:
            result = check()
        except OSError as exc:
            result, last = None, exc
        if result is not None:
            return result
        time.sleep(1)
    sys.exit(f"FAIL: {what} within the timeout (last error: {last})")


def ready():
    status, body = call("GET", "/readyz")
    return body if status == 200 else None


print(f"web ready at {BASE}: {json.dumps(until('web answers /readyz with 200', ready))}")
if not TOKEN:
    print("no API key (helmTest.apiKey.existingSecret): enqueue round trip not checked")
    sys.exit(0)
status, job = call("POST", "/jobs/add", {"a": 20, "b": 22})
if status != 202:
    sys.exit(f"FAIL: POST /jobs/add answered {status}: {job}")
print(f"enqueued job {job['job_id']}")


def done():
    status, body = call("GET", job["status_url"])
    if status != 200:
        sys.exit(f"FAIL: GET {job['status_url']} answered {status}: {body}")
    return body if body["ready"] else None


result = until(f"job {job['job_id']} finishes on a worker", done)
if result.get("state") != "success" or result.get("value") != 42:
    sys.exit(f"FAIL: job {job['job_id']} ended {result}")
print(f"job {job['job_id']} ran on a worker: 20 + 22 = {result['value']}")
