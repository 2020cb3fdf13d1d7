"""The prefetch module's own logic: request building and result shaping.

The pulls themselves are tested for real in tests/integration; here the
client is a recorder that returns a fixed report, so only the module's
bookkeeping is under test.
"""

import pytest

from ansible_collections.bbklab.puller.plugins.modules.prefetch import ImagePrefetcher


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = dict(images=[], auth_config=None, concurrency=10, retry=3, deadline="30m", pull="always",
                           ignore_failures=False)
        self.params.update(params)
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)


class Recorder:
    def __init__(self, report):
        self.report = report
        self.bodies = []

    def pull(self, body):
        self.bodies.append(body)
        return self.report


def row(image, tag="latest", status="pulled", prev="", new="sha256:1", err=""):
    return {"image": image, "tag": tag, "project": "", "cost": "1s", "retried": 1, "errmsg": err, "digest": "",
            "id": new, "previous_id": prev, "status": status}


def test_module_auth_config_applies_to_items_without_their_own():
    module = FakeModule(images=["a", {"image": "b", "auth_config": {"username": "own"}}, {"image": "c"}],
                        auth_config={"username": "u", "password": "p", "auth": None})
    body = ImagePrefetcher(module, None).request_body()
    assert body["images"][0] == {"image": "a", "auth_config": {"username": "u", "password": "p"}}
    assert body["images"][1]["auth_config"] == {"username": "own"}
    assert body["images"][2]["auth_config"] == {"username": "u", "password": "p"}
    assert body["dry_run"] is False and body["pull"] == "always"


def test_check_mode_is_a_dry_run():
    body = ImagePrefetcher(FakeModule(check_mode=True, images=["a"]), None).request_body()
    assert body["dry_run"] is True


def test_result_lists_and_diff():
    report = {"success": [row("a", status="pulled", new="sha256:new", prev="sha256:old"),
                          row("b:1", tag="1", status="up_to_date", prev="sha256:b", new="sha256:b"),
                          row("c", status="present", prev="sha256:c", new="sha256:c"),
                          row("a", status="pulled", new="sha256:new", prev="sha256:old")],
              "failure": []}
    module = FakeModule(images=["a", "b:1", "c", "a"])
    result = ImagePrefetcher(module, Recorder(report)).run()
    assert result["changed"] is True
    assert result["pulled"] == ["a:latest"]
    assert result["up_to_date"] == ["b:1", "c:latest"]
    assert result["diff"]["before"]["a:latest"] == "sha256:old"
    assert result["diff"]["after"]["a:latest"] == "sha256:new"


def test_nothing_changed():
    report = {"success": [row("a", status="present", prev="x", new="x")], "failure": []}
    assert ImagePrefetcher(FakeModule(images=["a"]), Recorder(report)).run()["changed"] is False


def test_failures_fail_the_task_naming_each_image():
    report = {"success": [], "failure": [row("a", status="failed", new="", err="unauthorized"),
                                         row("b", status="failed", new="", err="manifest unknown")]}
    module = FakeModule(images=["a", "b"])
    with pytest.raises(SystemExit):
        ImagePrefetcher(module, Recorder(report)).run()
    assert "failed to pull 2 image(s): a:latest (unauthorized); b:latest (manifest unknown)" == module.failed["msg"]
    assert module.failed["failure"] == report["failure"]


def test_ignore_failures_returns_them():
    report = {"success": [], "failure": [row("a", status="failed", new="", err="x")]}
    result = ImagePrefetcher(FakeModule(images=["a"], ignore_failures=True), Recorder(report)).run()
    assert result["failure"] and result["changed"] is False


def test_bad_item_fails_before_any_pull():
    from ansible_collections.bbklab.puller.plugins.module_utils._errors import InvalidRequest

    recorder = Recorder(None)
    with pytest.raises(InvalidRequest) as info:
        ImagePrefetcher(FakeModule(images=["ok", {"image": "Bad Ref"}]), recorder).run()
    assert info.value.field == "images[1].image" and recorder.bodies == []


def test_allow_list_refuses_before_any_pull():
    from ansible_collections.bbklab.puller.plugins.module_utils._errors import RequestForbidden

    recorder = Recorder({"success": [], "failure": []})
    module = FakeModule(images=["reg.example.com/a:1", "busybox"], allow_registries=["reg.example.com"])
    with pytest.raises(RequestForbidden) as info:
        ImagePrefetcher(module, recorder).run()
    assert info.value.field == "images[1].image" and "docker.io" in info.value.message
    assert recorder.bodies == []
