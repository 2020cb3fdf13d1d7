"""The pull-stream reader against recorded streams of each dialect."""

import json
from pathlib import Path

from puller.core._stream import KIND_DIGEST, KIND_ERROR, KIND_LAYER, KIND_PROGRESS, KIND_STATUS, read_event

STREAMS = Path(__file__).parent / "streams"


def _read(name):
    return [read_event(json.loads(line)) for line in (STREAMS / name).read_text().splitlines() if line]


def test_classic_stream_gives_byte_progress_layer_phases_and_the_digest():
    events = _read("classic-dockerd-20.10.ndjson")
    kinds = [e.kind for e in events]
    assert kinds[0] == KIND_STATUS and kinds[-1] == KIND_STATUS
    assert [e.detail for e in events if e.kind == KIND_DIGEST] == ["sha256:" + "2d0b3f4c1e6a1b7c9d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"]
    progress = [e.detail for e in events if e.kind == KIND_PROGRESS]
    assert all(0 < p["current"] <= p["total"] for p in progress)
    assert {p["layer"] for p in progress} == {"5c3c1e1d9a2b", "8d41b7f8c3e0"}
    done = {e.detail["layer"] for e in events if e.kind == KIND_LAYER and e.detail["done"]}
    assert done == {"5c3c1e1d9a2b", "8d41b7f8c3e0"}


def test_containerd_store_stream_without_fs_layer_lines_or_extraction_totals():
    events = _read("containerd-store-docker-25.ndjson")
    assert KIND_ERROR not in {e.kind for e in events}
    progress = [e.detail for e in events if e.kind == KIND_PROGRESS]
    # Extraction in seconds ("units": "s", no total) is a sign of life, not bytes.
    assert [p["phase"] for p in progress] == ["Downloading", "Downloading"]
    extracting = [e.detail for e in events if e.kind == KIND_LAYER and e.detail["phase"] == "Extracting"]
    assert len(extracting) == 2 and all(x["current"] is None for x in extracting)
    assert [e.detail["layer"] for e in events if e.kind == KIND_LAYER and e.detail["done"]] == \
        ["c6a83fedfae6", "c6a83fedfae6"]
    assert any(e.kind == KIND_DIGEST for e in events)


def test_podman_error_on_the_first_event():
    (event,) = _read("podman-4.3-error.ndjson")
    assert event.kind == KIND_ERROR and "unauthorized: authentication required" in event.detail


def test_odd_events_are_signs_of_life():
    for raw in ({}, {"status": 3}, {"id": 5, "status": "x"}, {"progressDetail": "?"}, [], None,
                {"id": "abc", "status": "Downloading", "progressDetail": {"current": True, "total": 5}}):
        assert read_event(raw).kind in (KIND_STATUS, KIND_LAYER)
