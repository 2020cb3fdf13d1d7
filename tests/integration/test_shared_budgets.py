"""A request that joins a pull in flight keeps its own deadline and retry budget;
a hung daemon does not hold an answer past the request's deadline.

Before: B (3 s) joining A (40 s) on a registry that never answered waited
39 s for A's deadline; A (3 s, retry 1) made B (60 s) fail after 2.5 s though
the registry answered at 6 s; and with dockerd stopped one second into a 5 s
pull the answer came after 15 s.
"""

import subprocess
import time

from conftest import report
from faultproxy import Rules


def _timed(future):
    resp = future.result(120)
    return resp, time.monotonic()


def _daemon_pulls(server, image):
    return server.log().count("pull %s:latest attempt " % image)


def test_a_joiner_stops_at_its_own_deadline(clean, server, proxy):
    proxy.reset_stats(Rules(delay=60))  # manifests never answered in time
    image = clean.image(6, registry=proxy.address)
    t0 = time.monotonic()
    a = server.pull_later({"images": [image], "timeout": "8s"})
    time.sleep(1.0)
    b = server.pull_later({"images": [image], "timeout": "2s"})
    (b_resp, b_end), (a_resp, a_end) = _timed(b), _timed(a)
    (b_row,) = b_resp.json()["failure"]
    (a_row,) = a_resp.json()["failure"]
    assert "deadline of 2s" in b_row["errmsg"] and b_end - t0 < 1.0 + 2.0 + 1.0, (b_row, b_end - t0)
    assert "deadline of 8s" in a_row["errmsg"] and a_end - t0 < 8.0 + 1.5, (a_row, a_end - t0)
    assert _daemon_pulls(server, image) == 1
    report(clean, "joiner with 2s beside an 8s pull on a hung registry: answered after %.1fs (its own deadline)"
           % (b_end - t0 - 1.0))


def test_a_joiner_with_a_longer_budget_outlives_the_pull_it_joined(clean, server, proxy):
    proxy.reset_stats(Rules(delay=2.5))  # each manifest request answered after 2.5 s
    image = clean.image(7, registry=proxy.address)
    t0 = time.monotonic()
    a = server.pull_later({"images": [image], "timeout": "1500ms", "retry": 1})
    time.sleep(0.3)
    b = server.pull_later({"images": [image], "timeout": "60s"})
    (a_resp, a_end), (b_resp, b_end) = _timed(a), _timed(b)
    (a_row,) = a_resp.json()["failure"]
    assert "deadline of 1.5s" in a_row["errmsg"] and a_end - t0 < 3.0
    assert b_resp.status_code == 200, b_resp.text
    (b_row,) = b_resp.json()["success"]
    assert b_row["status"] == "pulled" and b_row["retried"] == 1, b_row
    assert _daemon_pulls(server, image) == 1, "the pull was restarted instead of shared"
    report(clean, "joiner with 60s beside a 1.5s pull (registry answering after 2.5s per manifest): "
           "pulled in %.1fs, 1 daemon pull" % (b_end - t0 - 0.3))


def test_a_joiner_gets_its_own_further_attempts_after_a_transient_failure(clean, server, proxy):
    proxy.reset_stats(Rules(fail_first=4))  # the first attempt fails (503), whatever dockerd retries
    image = clean.image(8, registry=proxy.address)
    a = server.pull_later({"images": [image], "retry": 1})
    time.sleep(0.05)
    b = server.pull_later({"images": [image], "retry": 5})
    a_resp, b_resp = a.result(60), b.result(60)
    assert a_resp.status_code == 500 and a_resp.json()["failure"][0]["retried"] == 1
    assert b_resp.status_code == 200, b_resp.text
    assert b_resp.json()["success"][0]["retried"] >= 2


def test_the_answer_comes_by_the_deadline_when_the_daemon_hangs(clean, server, proxy):
    proxy.reset_stats(Rules(delay=3))
    pid = int(open("%s/docker/docker.pid" % clean.dir).read())
    image = clean.image(9, registry=proxy.address)
    t0 = time.monotonic()
    pending = server.pull_later({"images": [image], "timeout": "5s"})
    time.sleep(1.0)
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    try:
        resp, end = _timed(pending)
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)
    (row,) = resp.json()["failure"]
    assert "deadline of 5s" in row["errmsg"]
    assert end - t0 < 5.0 + 3.5, end - t0
    report(clean, "dockerd stopped 1s into a 5s pull: answer after %.1fs" % (end - t0))
