"""JSON answers, shared by every route: ``json_answer`` and ``error_answer``."""

import json

import bottle


def json_answer(status, payload, headers=None):
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return bottle.HTTPResponse(body=json.dumps(payload), status=status, headers=all_headers)


def error_answer(status, message, field=None, headers=None):
    payload = {"error": message}
    if field:
        payload["field"] = field
    return json_answer(status, payload, headers)
