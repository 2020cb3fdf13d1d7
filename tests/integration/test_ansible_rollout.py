"""The README's rollout playbook, by ansible-playbook on three simulated hosts:
bbklab.puller.preheat fills a site registry once, then bbklab.puller.prefetch
pulls on every host by the digests it registered, asking the origin nothing."""

import re

from faultproxy import FaultProxy
from preheatkit import site  # noqa: F401  pylint: disable=unused-import  # the fixture
from test_ansible_prefetch import HERE, ROOT, fleet  # noqa: F401  pylint: disable=unused-import
from test_cri_client import registry_digest

PLAYBOOK = HERE / "ansible" / "rollout.yml"


def test_the_readme_shows_the_playbook_that_is_tested():
    readme = (ROOT / "README.md").read_text()
    tasks = PLAYBOOK.read_text().split("  tasks:\n", 1)[1].split("    - name: Save the result", 1)[0]
    assert tasks.strip() and tasks.rstrip() in readme, "README's rollout playbook differs from %s" % PLAYBOOK


def test_preheat_once_then_every_host_pulls_by_digest(fleet, ground, site):  # noqa: F811
    origin = FaultProxy(ground.registry_port, preserve_headers=True)
    try:
        release = ["%s/fixture/img-%02d:latest" % (origin.address, n) for n in (7, 8, 9)]
        fleet.clean()
        extra = {"release": release, "origin_registry": origin.address, "site_registry": site.address}
        results = fleet.results(fleet.play(extra, playbook=PLAYBOOK))
        digests = [registry_digest(ground.registry, "fixture/img-%02d" % n) for n in (7, 8, 9)]
        preheat = results["host1"]["preheat"]
        assert [row["digest"] for row in preheat["success"]] == digests and preheat["changed"] is True
        for name, result in results.items():
            rows = result["prefetch"]["success"]
            assert [(row["digest"], row["source"]) for row in rows] == [(d, site.address) for d in digests], name
        for name, client in fleet.clients().items():
            tags = sorted(t for image in client.images() for t in image.get("RepoTags") or [])
            assert tags == sorted(release), (name, tags)
        # The origin served the preheat's manifest requests, one per image; the three hosts asked it nothing.
        gets = [path for method, path in origin.manifest_requests if method == "GET"]
        assert len(gets) == len(release), origin.manifest_requests
        assert all(re.search(r"/manifests/latest$", path) for path in gets)
        origin.reset_stats()
        again = fleet.results(fleet.play(extra, playbook=PLAYBOOK))
        preheat = again["host1"]["preheat"]
        assert preheat["changed"] is False and preheat["copied"] == []  # the site had it all: no bytes
        assert all(row["bytes_copied"] == 0 for row in preheat["success"])
    finally:
        origin.close()
