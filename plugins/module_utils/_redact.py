# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep credentials out of every message the engine produces."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

SECRET_AUTH_KEYS = ("password", "auth", "identitytoken", "registrytoken")
MASK = "********"


def secrets_of(auth_config):
    """Every string from ``auth_config`` that must never be shown, longest first.

    Besides the values themselves this includes the base64 ``user:password``
    form, which a daemon or registry may echo back in an error.
    """
    if not auth_config:
        return ()
    found = set()
    for key in SECRET_AUTH_KEYS:
        value = auth_config.get(key)
        if isinstance(value, str) and value:
            found.add(value)
    user, password = auth_config.get("username"), auth_config.get("password")
    if isinstance(user, str) and isinstance(password, str) and password:
        found.add(base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii"))
    return tuple(sorted(found, key=len, reverse=True))


def redact(text, secrets):
    """Replace each secret in ``text`` by a mask."""
    if not text:
        return text
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
