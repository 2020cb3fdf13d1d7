"""Pure logic of the CRI pulls' tracking: which downloads are whose, signs of life, progress events."""

from puller.core._cri_ingests import PullTracker, ingest_digest, short_id
from puller.core._registry import Descriptor, ImageManifest
from puller.jobs.model import Entry

L1, L2, CONFIG, MANIFEST = ("sha256:" + c * 64 for c in "1234")
OTHER = "sha256:" + "9" * 64
SIZE = 4 << 20


class Watch:
    def __init__(self):
        self.alive_calls = 0

    def alive(self):
        self.alive_calls += 1


def tracker_with_manifest():
    tracker = PullTracker(Watch())
    tracker.know(ImageManifest(MANIFEST, None, Descriptor(CONFIG, 100, ""),
                               (Descriptor(L1, SIZE, ""), Descriptor(L2, SIZE, ""))))
    return tracker


def layer(digest, offset):
    return ("layer-" + digest, offset, SIZE)


def events_of(tracker):
    events, ended = tracker.take(0)
    return [(kind, d["layer"], d["phase"], d["current"]) for kind, d in events]


def test_refs():
    assert ingest_digest("layer-" + L1) == L1
    assert ingest_digest("manifest-docker.io/library/x@" + MANIFEST) == MANIFEST
    assert short_id(L1) == "1" * 12


def test_only_its_own_downloads_count():
    tracker = tracker_with_manifest()
    assert events_of(tracker) == [("layer", "1" * 12, "Waiting", None), ("layer", "2" * 12, "Waiting", None)]
    tracker.observe([layer(OTHER, 0)], frozenset())
    tracker.observe([layer(OTHER, 1 << 20)], frozenset())
    assert tracker.watch.alive_calls == 0 and events_of(tracker) == []  # another image's download moved
    tracker.observe([layer(OTHER, 2 << 20), ("manifest-" + MANIFEST, 0, 500)], frozenset())
    assert tracker.watch.alive_calls == 1  # its manifest appeared
    tracker.observe([layer(OTHER, 3 << 20), layer(L1, 0)], frozenset())
    tracker.observe([layer(OTHER, 4 << 20), layer(L1, 0)], frozenset())  # stuck: no sign of life
    assert tracker.watch.alive_calls == 2
    assert events_of(tracker) == [("progress", "1" * 12, "Downloading", 0)]


def test_progress_completion_and_unpacking():
    tracker = tracker_with_manifest()
    events_of(tracker)
    tracker.observe([layer(L1, 1 << 20), layer(L2, 2 << 20)], frozenset())
    tracker.observe([layer(L2, 3 << 20)], frozenset())  # L1 done
    assert events_of(tracker) == [
        ("progress", "1" * 12, "Downloading", 1 << 20), ("progress", "2" * 12, "Downloading", 2 << 20),
        ("progress", "2" * 12, "Downloading", 3 << 20), ("progress", "1" * 12, "Download complete", SIZE)]
    tracker.observe([], frozenset())  # L2 done: every layer is, containerd unpacks
    assert events_of(tracker) == [("progress", "2" * 12, "Download complete", SIZE),
                                  ("progress", "1" * 12, "Extracting", 0), ("progress", "2" * 12, "Extracting", 0)]
    calls = tracker.watch.alive_calls
    tracker.observe([], frozenset())
    tracker.observe([], frozenset())
    assert tracker.watch.alive_calls == calls + 2  # unpacking shows nothing: still alive
    assert events_of(tracker) == []
    tracker.end()
    tracker.observe([layer(L1, 0)], frozenset())
    assert tracker.watch.alive_calls == calls + 2 and events_of(tracker) == []  # nothing after the end
    assert [(k, d["phase"], d["done"]) for k, d in tracker.finish(True)] == [("layer", "Pull complete", True)] * 2


def test_a_pause_between_downloads_is_not_unpacking():
    tracker = tracker_with_manifest()
    events_of(tracker)
    tracker.observe([layer(L1, 1 << 20)], frozenset())
    tracker.observe([], frozenset())  # L1 done, L2 not started yet
    assert [e[2] for e in events_of(tracker)] == ["Downloading", "Download complete"]
    tracker.observe([], frozenset())  # a second poll with nothing: unpacking (L2 was there already)
    assert [e[2] for e in events_of(tracker)] == ["Extracting", "Extracting"]


def test_a_download_that_ended_between_polls_completes_at_the_end():
    tracker = tracker_with_manifest()
    events_of(tracker)
    tracker.observe([layer(L1, 1 << 20), layer(L2, 1 << 20)], frozenset())
    events_of(tracker)
    tracker.end()
    finished = [(d["layer"], d["phase"]) for _k, d in tracker.finish(True)]
    assert finished == [("1" * 12, "Download complete"), ("2" * 12, "Download complete"),
                        ("1" * 12, "Pull complete"), ("2" * 12, "Pull complete")]
    assert tracker.finish(False) == []


def test_without_a_manifest_unclaimed_downloads_count():
    tracker = PullTracker(Watch())
    tracker.know(None)
    claimed = frozenset([OTHER])  # another pull's, known from its manifest
    tracker.observe([layer(OTHER, 0)], claimed)
    tracker.observe([layer(OTHER, 1 << 20)], claimed)
    assert tracker.watch.alive_calls == 0
    tracker.observe([layer(OTHER, 2 << 20), layer(L1, 0)], claimed)
    tracker.observe([layer(OTHER, 3 << 20), layer(L1, 1 << 20)], claimed)
    assert tracker.watch.alive_calls == 2
    assert events_of(tracker) == []  # no per-layer progress: the layers are unknown
    assert tracker.finish(True) == []


def test_a_job_figure_rises_to_100_with_these_events():
    tracker = tracker_with_manifest()
    entry = Entry(0, "img", "latest", None)
    figures = []

    def feed(events):
        for _kind, detail in events:
            entry.layer(detail)
            figures.append(entry.progress)

    feed(tracker.take(0)[0])
    for offset in range(0, SIZE, 1 << 20):
        tracker.observe([layer(L1, offset), layer(L2, offset)], frozenset())
        feed(tracker.take(0)[0])
    assert 50 < figures[-1] < 80
    tracker.observe([], frozenset())
    feed(tracker.take(0)[0])
    assert round(figures[-1], 6) == 80.0  # downloaded: 80 %, unpacking the rest
    tracker.end()
    feed(tracker.finish(True))
    assert figures == sorted(figures) and figures[-1] == 99.0  # the image's end makes it 100
    assert entry.bytes_done == entry.bytes_total == 2 * SIZE
