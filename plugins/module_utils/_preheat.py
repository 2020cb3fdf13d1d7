# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preheat: copy a release from its origin into a site registry, once, with the engine's rules.

A preheat is a pull whose runtime is the site (``_runtime_site.SiteRuntime``):
the same request shape, rows, retries, deadlines, shared flights, progress
and cancel. Its body is a ``/pull`` body with ``{"preheat": {"to": SITE}}``;
``parse_preheat_request`` validates it (the site named under ``preheat.to``,
and on a server admitted by the operator's ``--preheat-site`` list), and
``Preheaters`` holds one engine per site for a process (server, CLI, module).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ._engine import Engine, PullReport, run_in_threads
from ._errors import InvalidRequest, RequestForbidden
from ._mirrors import normalize_host
from ._request import parse_pull_request
from ._runtime_site import SiteRuntime

PREHEAT_FIELD = "preheat"


def preheat_site(body, allowed_sites=None):
    """The site a preheat body copies to (``preheat.to``), checked.

    ``allowed_sites`` (the server's ``--preheat-site``), when not None, must
    name it: otherwise an API caller could have the server copy images,
    pulled with its credentials, to any registry.
    """
    target = body.get(PREHEAT_FIELD) if isinstance(body, dict) else None
    if not isinstance(target, dict):
        raise InvalidRequest("must be an object whose key to names the site registry, HOST[:PORT]", PREHEAT_FIELD)
    unknown = sorted(set(target) - set(["to"]))
    if unknown:
        raise InvalidRequest("unknown key; expected to", "%s.%s" % (PREHEAT_FIELD, unknown[0]))
    if target.get("to") is None:
        raise InvalidRequest("is required: the site registry to copy to", PREHEAT_FIELD + ".to")
    site = normalize_host(target["to"], PREHEAT_FIELD + ".to")
    if allowed_sites is not None and site not in allowed_sites:
        raise RequestForbidden("site %s is not one this server copies to; it copies only to the sites its operator "
                               "named with --preheat-site (%s)" % (site, ", ".join(allowed_sites) or "none"),
                               PREHEAT_FIELD + ".to")
    return site


def parse_preheat_request(body, allowed_sites=None, **kwargs):
    """``(site, PullRequest)`` of a preheat body; ``kwargs`` go to ``parse_pull_request``
    (``max_images``, ``default_auth``, ``allowed_registries``), which refuses
    what a copy cannot honour (``mirrors``, a ``platform``) naming the field."""
    site = preheat_site(body, allowed_sites)
    request = parse_pull_request(dict((k, v) for k, v in body.items() if k != PREHEAT_FIELD), runtime=SiteRuntime,
                                 **kwargs)
    for spec in request.specs:
        if spec.ref.domain == site:
            raise InvalidRequest("is at the site %s already: a preheat copies from an origin to the site"
                                 % site, "images[%d].image" % spec.index)
    return site, request


def parse_sites(values, field="--preheat-site"):
    """The operator's list of sites (``HOST[:PORT]``), normalised."""
    sites = []
    for value in values or ():
        site = normalize_host(value, field)
        if site not in sites:
            sites.append(site)
    return tuple(sites)


class SiteEngine:
    """The engine of one site, copying the first image of a request alone, then the rest at once.

    skopeo asks the site for each blob before it copies it, so images that
    share layers (a release's base image) copied at once would each fetch
    them from the origin: the first copy puts the shared layers at the site,
    and the others then skip them. The rows stay in request order.
    """

    def __init__(self, engine):
        self.engine = engine
        self.runtime = engine.runtime

    def pull(self, request, runner=run_in_threads, on_event=None, cancel=None):
        specs = request.specs
        if len(specs) < 2 or request.concurrency < 2 or request.dry_run:
            return self.engine.pull(request, runner=runner, on_event=on_event, cancel=cancel)
        first = self.engine.pull(request._replace(specs=specs[:1]), runner=runner, on_event=on_event, cancel=cancel)
        rest = self.engine.pull(request._replace(specs=specs[1:]), runner=runner, on_event=on_event, cancel=cancel)
        return PullReport(first.success + rest.success, first.failure + rest.failure, first.start_at,
                          first.cost + rest.cost)

    def in_flight(self):
        return self.engine.in_flight()


class Preheaters:
    """One engine per site, made on first use and shared by every preheat to it.

    ``engine_config`` gives deadlines, retries and the cap on concurrent
    copies (per site); ``site_auth`` maps a site host to its ``auth_config``
    (the mirror credentials: a site is where hosts pull from, as from a
    mirror); ``credentials`` finds the origin's, as for a pull.
    """

    def __init__(self, engine_config, site_auth=None, insecure_registries=(), credentials=None, observer=None,
                 skopeo="skopeo"):
        self.engine_config = engine_config
        self.site_auth = dict(site_auth or {})
        self.insecure_registries = tuple(insecure_registries or ())
        self.credentials = credentials
        self.observer = observer
        self.skopeo = skopeo
        self._engines = {}
        self._lock = threading.Lock()

    def engine(self, site):
        with self._lock:
            engine = self._engines.get(site)
            if engine is None:
                runtime = SiteRuntime(site, site_auth=self.site_auth.get(site), skopeo=self.skopeo,
                                      insecure_registries=self.insecure_registries,
                                      timeout=self.engine_config.daemon_timeout)
                engine = SiteEngine(Engine(self.engine_config, credentials=self.credentials, runtime=runtime,
                                           observer=self.observer))
                self._engines[site] = engine
            return engine

    def in_flight(self):
        """The copies running now, per site, for ``/debug/dump``."""
        with self._lock:
            engines = dict(self._engines)
        return dict((site, engine.in_flight()) for site, engine in engines.items() if engine.in_flight())

    def close(self):
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.runtime.close()
