"""One version: puller/__init__.py's, which galaxy.yml and the changelog must agree with."""

import re
from pathlib import Path

import yaml

import puller

ROOT = Path(__file__).resolve().parents[3]


def _key(version):
    return tuple(int(part) for part in version.split("."))


def test_galaxy_yml_has_the_package_version():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert galaxy["version"] == puller.__version__, "run scripts/version.sh %s" % puller.__version__


def test_the_changelog_knows_no_release_newer_than_the_version():
    changes = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    releases = sorted(changes["releases"], key=_key)
    assert _key(releases[-1]) <= _key(puller.__version__)
    assert re.fullmatch(r"\d+\.\d+\.\d+", puller.__version__)
