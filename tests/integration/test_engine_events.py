"""The engine used directly, as the CLI and the Ansible module use it: threads, events."""

from puller.core._engine import Engine, EngineConfig
from puller.core._request import parse_pull_request


def test_events_tell_the_story_of_a_pull(clean):
    events = []
    engine = Engine(EngineConfig(docker_host=clean.socket, backoff_base=0.01))
    request = parse_pull_request({"concurrency": 2, "images": [clean.image(23), clean.image(24), clean.image(23)]})
    report = engine.pull(request, on_event=events.append)
    assert report.ok and len(report.success) == 3
    kinds = [e.kind for e in events]
    assert kinds.count("attempt") == 2 and kinds.count("done") == 2  # the duplicate is pulled once
    progress = [e for e in events if e.kind == "progress"]
    assert progress and all(e.detail["total"] > 0 and e.detail["layer"] for e in progress)
    done = [e for e in events if e.kind == "done"]
    assert {e.detail.status for e in done} == {"pulled"}


def test_a_failing_event_callback_does_not_break_the_pull(clean):
    def explode(event):
        raise RuntimeError("callback bug")

    engine = Engine(EngineConfig(docker_host=clean.socket))
    report = engine.pull(parse_pull_request({"images": [clean.image(22)]}), on_event=explode)
    assert report.ok
