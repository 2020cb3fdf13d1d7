"""``puller pull`` as a user runs it: exit codes, rows, and Ctrl-C.

Before: SIGINT during a pull through a slow registry exited after 10 s with a
KeyboardInterrupt traceback, and a second SIGINT still waited (58 s).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import report
from faultproxy import Rules


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "puller", "pull"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **kwargs.pop("env", {})),
                            **kwargs)


def _interrupt_when(proc, ready, signals=1):
    """Wait until ``ready()``, send SIGINT ``signals`` times; ``(out, err, seconds to exit)``."""
    try:
        for _i in range(200):
            if ready():
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        for _i in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
        return out, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_pull_prints_rows_and_exits_0(clean):
    proc = _cli("--docker-socket", clean.socket, clean.image(10), clean.image(11))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "IMAGE", "TIME", "TRIES", "ERROR"]
    assert [line.split()[0] for line in lines[1:3]] == ["pulled", "pulled"] and clean.image(10) in out
    assert lines[-1].startswith("2 pulled in ") and lines[-1].endswith("s")
    assert "ms" not in out  # durations for people: 0.42s, not 419.2ms


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
    out, err, took = _interrupt_when(proc, lambda: client.images(name=fast) and time.sleep(0.5) is None)
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
    _out, err, _took = _interrupt_when(proc, lambda: proxy.manifest_requests, signals=2)
    assert proc.returncode == 130 and "Traceback" not in err


def test_pull_through_a_server_is_a_job_and_jobs_lists_it(clean, server):
    proc = _cli("--server", server.url, clean.image(10), clean.image(99))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "pulled" in out and "failed" in out and "manifest unknown" in out
    jobs = subprocess.run([sys.executable, "-m", "puller", "jobs", "--server", server.url, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    (job,) = json.loads(jobs.stdout)
    assert job["status"] == "failed" and (job["succeeded"], job["failed"]) == (1, 1)
    shown = subprocess.run([sys.executable, "-m", "puller", "jobs", job["id"], "--server", server.url],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0 and "manifest unknown" in shown.stdout


@pytest.mark.parametrize("cancel", [False, True])
def test_ctrl_c_detaches_from_a_server_job_or_cancels_it(clean, server, proxy, cancel):
    proxy.reset_stats(Rules(delay=30))
    args = ["--server", server.url, clean.image(13, registry=proxy.address)]
    proc = _cli(*(args + (["--cancel-on-interrupt"] if cancel else [])))
    out, err, took = _interrupt_when(proc, lambda: proxy.manifest_requests)
    assert proc.returncode == 130 and took < 2.5 and "Traceback" not in err, (out, err, took)
    (job,) = requests.get(server.url + "/jobs").json()["jobs"]
    if cancel:
        assert job["status"] == "cancelled" and "cancelled" in out
    else:
        assert job["status"] == "running" and job["id"] in err and "detached" in err
        requests.delete(server.url + "/jobs/" + job["id"], timeout=30)


def test_unreachable_server_exits_3(clean):
    proc = _cli("--server", "http://127.0.0.1:9", clean.image(1))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "cannot reach the puller server" in err


def test_images_from_a_list_a_compose_file_and_kubernetes_manifests(clean, tmp_path):
    listed = tmp_path / "release.txt"
    listed.write_text("# the release\n%s\n%s  # the app\n\n" % (clean.image(1), clean.image(2)))
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  web:\n    image: %s\n  db:\n    image: %s:latest\n    ports: ['5432']\n"
                       % (clean.image(3), clean.image(4)))
    k8s = ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n"
           "        - {name: init, image: %s}\n      containers:\n        - {name: app, image: %s}\n---\n"
           "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - {name: x, image: %s}\n"
           % (clean.image(5), clean.image(6), clean.image(1)))
    proc = subprocess.Popen([sys.executable, "-m", "puller", "pull", "--docker-socket", clean.socket, "-f",
                             str(listed), "-f", str(compose), "-f", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(k8s, timeout=120)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1].startswith("7 pulled in ")  # img-01 is named twice: two rows, one pull
    assert "\033[" not in out  # no colour when stdout is not a terminal
    again = _cli("--docker-socket", clean.socket, "--pull", "missing", "-f", str(compose))
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and out.splitlines()[-1].startswith("2 present in "), out


def _hostile_release_files(tmp_path):
    laughs = ['a0: &a0 ["lol"]'] + ["a%d: &a%d [%s]" % (n, n, ", ".join(["*a%d" % (n - 1)] * 10))
                                    for n in range(1, 10)]
    return {
        "laughs.yml": ("\n".join(laughs) + "\nservices: {web: {image: busybox}}\n").encode(),
        "self.yml": b"a: &a [*a]\n",
        "deep.yml": b"[" * 5000 + b"]" * 5000 + b"\n",
        "binary.bin": bytes((n * 7919 + 13) % 256 for n in range(4096)),
        "latin1.txt": "# caf\u00e9\nbusybox\n".encode("latin-1"),
        "k8s.yml": b"kind: Pod\nspec: {containers: [{image: a}]}\n---\nkind: Pod\nspec: [containers:\n  - image: b\n",
    }


def test_hostile_release_files_exit_2_with_one_line_and_pull_nothing(clean, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(clean.image(1) + "\n")
    client = clean.client()
    for name, content in _hostile_release_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        t0 = time.monotonic()
        proc = _cli("--docker-socket", clean.socket, "-f", str(good), "-f", str(path))
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
        assert proc.returncode == 2, (name, out, err)
        assert len(err.splitlines()) == 1 and err.startswith("puller: -f %s: " % path), (name, err)
        assert "Traceback" not in err and not out, (name, out, err)
        report(clean, "`puller pull -f %s` (hostile release file): exit 2 in %.2fs: %s" % (name, took, err.strip()))
    assert not client.images(name=clean.image(1)), "a pull started before every file was read"
    client.close()


def test_a_byte_order_mark_on_stdin_is_skipped(clean):
    proc = subprocess.Popen([sys.executable, "-m", "puller", "pull", "--docker-socket", clean.socket, "-f", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(b"\xef\xbb\xbf" + clean.image(2).encode() + b"\n", timeout=120)
    assert proc.returncode == 0, err
    assert out.decode().splitlines()[-1].startswith("1 pulled in ")
