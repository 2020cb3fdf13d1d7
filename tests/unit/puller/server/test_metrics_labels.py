"""Metric labels stay bounded by the operator's configuration, whatever callers name."""

from puller.server.metrics import EndpointLabels, Metrics

CONFIGURED = {"reg.example.com": ("cache.example.com:5000",)}


def _row(image, source, skipped=()):
    return {"image": image, "tag": "1", "status": "pulled", "cost": "1s", "source": source,
            "mirrors": [{"mirror": host, "error": "x"} for host in skipped]}


def test_configured_hosts_by_name_others_by_kind():
    labels = EndpointLabels(CONFIGURED)
    assert labels.source(_row("reg.example.com/a", "cache.example.com:5000")) == "cache.example.com:5000"
    assert labels.source(_row("reg.example.com/a", "reg.example.com")) == "reg.example.com"
    assert labels.source(_row("other.example.org/a", "other.example.org")) == "origin"
    assert labels.source(_row("other.example.org/a", "m1.example.net")) == "request"
    assert labels.mirror("cache.example.com:5000") == "cache.example.com:5000"
    assert labels.mirror("m1.example.net") == "request"


def test_a_thousand_request_mirrors_add_no_series():
    metrics = Metrics(lambda: [], mirrors=CONFIGURED)
    rows = [_row("other%d.example.org/a" % n, "m%d.example.net" % n, skipped=["s%d.example.net" % n])
            for n in range(1000)]
    metrics.rows({"success": rows, "failure": []})
    text = metrics.render().decode()
    series = [line for line in text.splitlines()
              if line.startswith(("puller_pulls_by_source_total{", "puller_mirror_fallbacks_total{"))]
    assert series == ['puller_pulls_by_source_total{source="request"} 1000.0',
                      'puller_mirror_fallbacks_total{mirror="request"} 1000.0'], series
