"""``puller pull`` as a user runs it: exit codes, rows, and Ctrl-C.

Before: SIGINT during a pull through a slow registry exited after 10 s with a
KeyboardInterrupt traceback, and a second SIGINT still waited (58 s).
"""

import os
import signal
import subprocess
import sys
import time

from conftest import report
from faultproxy import Rules


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "puller", "pull"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **kwargs.pop("env", {})),
                            **kwargs)


def test_pull_prints_rows_and_exits_0(clean):
    proc = _cli("--docker-socket", clean.socket, clean.image(10), clean.image(11))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.count("pulled") == 2 and clean.image(10) in out


def test_missing_image_exits_1_bad_input_2_no_daemon_3(clean, tmp_path):
    proc = _cli("--docker-socket", clean.socket, clean.image(99))
    out, _err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "failed" in out
    proc = _cli("--docker-socket", clean.socket, "Not A Reference")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "images[0]" in err
    proc = _cli("--docker-socket", str(tmp_path / "nothing.sock"), clean.image(1))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "cannot reach the Docker daemon" in err


def test_ctrl_c_aborts_the_pulls_in_flight_and_exits_130(clean, proxy):
    proxy.reset_stats(Rules(delay=30))  # the slow images would take minutes
    fast = clean.image(12)
    slow = [clean.image(n, registry=proxy.address) for n in (13, 14)]
    proc = _cli("--docker-socket", clean.socket, "--concurrency", "3", fast, *slow)
    client = clean.client()
    try:
        for _ in range(150):  # until the fast image is in
            if client.images(name=fast):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert took < 2.5, took
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "pulled" in out and fast in out
    assert out.count("cancelled") >= 2, out
    assert not any(client.images(name=image) for image in slow), "a cancelled image was tagged"
    client.close()
    report(clean, "Ctrl-C during `puller pull` with two images on a hung registry: exit 130 after %.2fs" % took)


def test_a_second_ctrl_c_leaves_at_once(clean, proxy):
    proxy.reset_stats(Rules(delay=30))
    proc = _cli("--docker-socket", clean.socket, clean.image(15, registry=proxy.address))
    try:
        for _ in range(200):  # until the daemon asks the registry
            if proxy.manifest_requests:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
