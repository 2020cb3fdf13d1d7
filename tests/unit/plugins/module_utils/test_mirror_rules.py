"""The allow-list bounds mirrors as well as images' registries."""

import pytest

from puller.core._errors import RequestForbidden
from puller.core._request import check_mirrors_allowed, parse_pull_request

ALLOWED = ["reg.example.com", "*.corp.example"]


def _parse(mirrors, **kwargs):
    return parse_pull_request({"images": ["reg.example.com/team/app:1"], "mirrors": mirrors},
                              allow_request_mirrors=True, allowed_registries=ALLOWED, **kwargs)


def test_a_request_mirror_outside_the_allow_list_is_forbidden_naming_it():
    with pytest.raises(RequestForbidden) as caught:
        _parse({"reg.example.com": ["cache.corp.example", "evil.example.net:5000"]})
    assert caught.value.field == "mirrors.reg.example.com[1]"
    assert "evil.example.net:5000" in caught.value.message and "not allowed" in caught.value.message


def test_every_registry_of_the_map_counts_even_one_no_image_uses():
    with pytest.raises(RequestForbidden) as caught:
        _parse({"docker.io": ["evil.example.net"]})
    assert caught.value.field == "mirrors.docker.io[0]"


def test_admitted_request_mirrors_are_planned():
    (spec,) = _parse({"reg.example.com": ["cache.corp.example"]}).specs
    assert [(m.host, m.trusted) for m in spec.mirrors] == [("cache.corp.example", False)]


def test_without_an_allow_list_any_mirror_may_be_named():
    (spec,) = parse_pull_request({"images": ["reg.example.com/a"], "mirrors": {"reg.example.com": ["m:5000"]}},
                                 allow_request_mirrors=True).specs
    assert [m.host for m in spec.mirrors] == ["m:5000"]


def test_the_operators_map_is_checked_against_the_allow_list_too():
    check_mirrors_allowed({"reg.example.com": ("a.corp.example",)}, ALLOWED, "--mirror")
    check_mirrors_allowed({"reg.example.com": ("elsewhere.net",)}, [], "--mirror")  # no allow-list: any
    with pytest.raises(RequestForbidden) as caught:
        check_mirrors_allowed({"reg.example.com": ("a.corp.example", "elsewhere.net")}, ALLOWED, "--mirror")
    assert caught.value.field == "--mirror.reg.example.com[1]"
