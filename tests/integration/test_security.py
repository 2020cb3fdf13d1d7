"""Tokens, listening addresses and credentials that must never leak."""

import requests

from conftest import LEAKS


def test_token_required_everywhere_but_ping(ground, start_server, tmp_path):
    token = "T0ken-For-Tests-xyz"
    LEAKS.secrets.add(token)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    server = start_server("--token-file", str(token_file))
    assert requests.get(server.url + "/ping").text == "OK"
    for method, path in (("GET", "/debug/dump"), ("POST", "/pull"), ("GET", "/metrics"), ("GET", "/openapi.json")):
        resp = requests.request(method, server.url + path, json={"images": [ground.image(1)]})
        assert resp.status_code == 401, path
        assert resp.json()["field"] == "Authorization"
        resp = requests.request(method, server.url + path, json={"images": [ground.image(1)]},
                                headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401, path
    good = {"Authorization": "Bearer " + token}
    assert requests.get(server.url + "/debug/dump", headers=good).status_code == 200
    resp = requests.post(server.url + "/pull", json={"images": [ground.image(1)]}, headers=good)
    assert resp.status_code == 200, resp.text
    dump = requests.get(server.url + "/debug/dump", headers=good)
    assert token not in dump.text and dump.json()["configs"]["token"] == "set"
    assert token not in server.log()


def test_token_from_environment(ground, start_server):
    LEAKS.secrets.add("env-token-abc")
    server = start_server(env={"PULLER_TOKEN": "env-token-abc"})
    assert requests.get(server.url + "/debug/dump").status_code == 401
    assert requests.get(server.url + "/debug/dump", headers={"Authorization": "Bearer env-token-abc"}).ok


def test_off_loopback_without_token_warns(start_server):
    server = start_server(listen_host="0.0.0.0")
    assert "WITHOUT A TOKEN" in server.log()


def test_loopback_without_token_does_not_warn(server):
    assert "WITHOUT A TOKEN" not in server.log()


def test_debug_dump_has_the_seed_fields_and_no_secret(clean, server):
    ground = clean
    body = {"images": [{"image": ground.private_image(2), "tag": "latest",
                        "auth_config": {"username": ground.user, "password": ground.password}}]}
    resp = server.pull(body)
    assert resp.status_code == 200, resp.text
    dump = requests.get(server.url + "/debug/dump")
    payload = dump.json()
    assert payload["configs"]["listen"].endswith(str(server.port))
    assert payload["configs"]["docker_socket"] == ground.socket
    assert isinstance(payload["num_fds"], int) and payload["num_fds"] > 0
    assert payload["start_at"] and payload["version"]["version"]
    assert payload["in_flight"] == []
    for text in (resp.text, dump.text, server.log()):
        assert ground.password not in text


def test_in_flight_pull_shows_in_debug_dump(clean, server, proxy):
    import threading
    from faultproxy import Rules

    proxy.reset_stats(Rules(delay=1.0))
    LEAKS.secrets.add("Pw-In-Flight-42")
    image = clean.image(20, registry=proxy.address)
    t = threading.Thread(target=server.pull, args=({"images": [{"image": image, "auth_config": {
        "username": "u", "password": "Pw-In-Flight-42"}}]},))
    t.start()
    try:
        import time
        time.sleep(0.5)
        dump = requests.get(server.url + "/debug/dump")
        (flight,) = dump.json()["in_flight"]
        assert flight["image"] == image + ":latest"
        assert "Pw-In-Flight-42" not in dump.text
    finally:
        t.join(30)


def test_wrong_short_or_wordlike_passwords_leave_messages_intact(clean, server):
    # Before: masking by substring turned "unauthorized: authentication
    # required" into "un********uthorized: ..." for the password "a",
    # giving the password away by elimination.
    ground = clean
    passwords = ["a", ":", "unauthorized", "authentication required", "e"]
    body = {"retry": 1, "concurrency": 5, "images": [
        {"image": ground.private_image(1), "project": p, "auth_config": {"username": ground.user, "password": p}}
        for p in passwords]}
    resp = server.pull(body)
    assert resp.status_code == 500
    rows = resp.json()["failure"]
    assert len(rows) == len(passwords)
    for row in rows:
        assert "unauthorized" in row["errmsg"] and "authentication required" in row["errmsg"], row
        assert "*" not in row["errmsg"], row
    assert "********" not in server.log()
