# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep credentials out of every message the engine produces.

Masking every occurrence of a password as a substring mangled ordinary
messages and gave short passwords away: with the password ``a``,
"unauthorized: authentication required" became
``un********uthorized: ********uthentic********tion required``. The daemon
and registries do not echo passwords in their errors; a credential reaches a
message only in a few forms, and those are redacted precisely:

- the userinfo of a URL (``https://user:secret@host``);
- an ``Authorization``-style value (``Bearer <token>``, ``Basic <base64>``);
- a key/value pair naming a credential (``"password": "..."``,
  ``identitytoken=...``, ``"auth": "..."``);
- a secret of this request standing as a whole token, when it cannot occur in
  ordinary text by chance (at least 8 characters, letters together with
  digits or symbols, no white space): tokens, base64 ``user:password``.

Text that holds none of these is returned unchanged, so a mask never hints at
what a short or wordlike password was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import re

SECRET_AUTH_KEYS = ("password", "auth", "identitytoken", "registrytoken")
MASK = "********"

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*):([^\s/@]+)@")
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/-]{8,}=*)")
_KEY_VALUE = re.compile(
    r"""(?i)(["']?\b(?:password|passwd|identitytoken|identity_token|registrytoken|registry_token|"""
    r"""access_token|refresh_token|client_secret)["']?\s*[:=]\s*["']?|"auth"\s*:\s*")([^"'\s,;&}]+)""")
_LETTER = re.compile(r"[A-Za-z]")
_NOT_LETTER = re.compile(r"[^A-Za-z\s]")


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


def distinctive(secret):
    """Whether ``secret`` cannot stand in ordinary text by chance."""
    return (len(secret) >= 8 and not any(c.isspace() for c in secret)
            and bool(_LETTER.search(secret)) and bool(_NOT_LETTER.search(secret)))


def _credential_value(match):
    value = match.group(3)
    # "Bearer realm=..." and "basic authentication" are words, not credentials.
    if value.islower() and value.isalpha():
        return match.group(0)
    return match.group(1) + match.group(2) + MASK


def redact(text, secrets=()):
    """``text`` with every credential form, and each distinctive secret, masked."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + ":" + MASK + "@", text)
    text = _AUTH_VALUE.sub(_credential_value, text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + MASK, text)
    for secret in secrets:
        if distinctive(secret):
            text = re.sub(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(secret), MASK, text)
    return text
