"""Two servers on one machine, each with the default state dir of its listen address."""

import signal
import time

import requests

from conftest import free_port
from faultproxy import Rules


def _wait_ended(server, job_id, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = requests.get(server.url + "/jobs/" + job_id, timeout=10).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("job %s did not end" % job_id)


def test_two_servers_on_two_ports_never_collide_and_each_resumes_its_own_jobs(clean, start_server, proxy,
                                                                              tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    first_port, second_port = free_port(), free_port()
    first = start_server(env=env, port=first_port, default_state_dir=True)
    second = start_server(env=env, port=second_port, default_state_dir=True)
    base = tmp_path / "xdg" / "puller"
    assert sorted(p.name for p in base.iterdir()) == sorted(
        ["127.0.0.1-%d" % first_port, "127.0.0.1-%d" % second_port])
    assert "jobs in %s" % (base / ("127.0.0.1-%d" % first_port)) in first.log()

    # A job on the first server is cut by a kill; the first server, restarted on
    # its address, resumes it, and the second never sees it.
    proxy.reset_stats(Rules(delay=3.0))
    images = [clean.image(n, registry=proxy.address) for n in (1, 2)]
    job_id = requests.post(first.url + "/jobs", json={"images": images}, timeout=10).json()["id"]
    time.sleep(0.5)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    proxy.reset_stats(Rules())
    again = start_server(env=env, port=first_port, default_state_dir=True)
    job = _wait_ended(again, job_id)
    assert job["status"] == "succeeded" and job["resumed"] == 1, job
    assert requests.get(second.url + "/jobs/" + job_id, timeout=10).status_code == 404
    assert requests.get(second.url + "/ping", timeout=5).status_code == 200


def test_an_explicit_state_dir_is_still_locked(start_server, tmp_path):
    state = tmp_path / "shared"
    start_server("--state-dir", str(state))
    try:
        start_server("--state-dir", str(state))
    except RuntimeError as exc:
        assert "another puller process holds it" in str(exc)
    else:
        raise AssertionError("a second server started on a locked state dir")
