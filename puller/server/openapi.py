"""The API's OpenAPI 3 description, served at ``/openapi.json``."""

from puller.core._reference import NAME_TOTAL_LENGTH_MAX
from puller.core._request import AUTH_CONFIG_KEYS, MAX_ATTEMPTS, PULL_POLICIES

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong."},
        "field": {"type": "string", "description": "Where, e.g. images[2].tag or body."},
    },
}
_ROW = {
    "type": "object",
    "required": ["image", "tag", "project", "cost", "retried", "errmsg", "digest", "id", "previous_id", "status"],
    "properties": {
        "image": {"type": "string"},
        "tag": {"type": "string"},
        "project": {"type": "string"},
        "cost": {"type": "string", "description": "Go duration string, e.g. 3.539696838s"},
        "retried": {"type": "integer", "minimum": 0, "description": "Attempts made."},
        "errmsg": {"type": "string"},
        "digest": {"type": "string"},
        "id": {"type": "string"},
        "previous_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pulled", "up_to_date", "present", "would_pull", "failed", "cancelled"]},
        "site": {"type": "string", "description": "Preheat: the site registry copied to."},
        "bytes_copied": {"type": "integer", "description": "Preheat: blob bytes sent to the site (0 when it had "
                                                           "every layer)."},
        "blobs_skipped": {"type": "integer", "description": "Preheat: blobs the site had already."},
    },
}
_REPORT = {
    "type": "object",
    "required": ["success", "failure", "startAt", "cost"],
    "properties": {
        "success": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
        "failure": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
        "startAt": {"type": "string", "format": "date-time"},
        "cost": {"type": "string"},
    },
}
_IMAGE = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1, "maxLength": NAME_TOTAL_LENGTH_MAX + 200,
                  "description": "Reference; may carry a tag or digest."},
        "tag": {"type": "string", "description": "Tag or digest; defaults to latest."},
        "project": {"type": "string", "description": "Echoed in the result row."},
        "platform": {"type": "string", "description": "OS/ARCH[/VARIANT] to pull, e.g. linux/arm64."},
        "digest": {"type": "string", "pattern": "^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$",
                   "description": "The resolved digest (a preheat's row gives it): pulled by digest through the "
                                  "mirrors, without asking the origin, then tagged with the tag."},
        "auth_config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: {"type": "string"} for key in AUTH_CONFIG_KEYS},
        },
    },
}
_PULL_REQUEST = {
    "type": "object",
    "required": ["images"],
    "properties": {
        "images": {"type": "array", "minItems": 1,
                   "items": {"oneOf": [{"type": "string", "minLength": 1}, {"$ref": "#/components/schemas/Image"}]}},
        "concurrency": {"type": "integer", "description": "<= 0 means 1."},
        "retry": {"type": "integer", "description": "Attempts per image; <= 0 means 3; at most %d." % MAX_ATTEMPTS},
        "pull": {"type": "string", "enum": list(PULL_POLICIES)},
        "dry_run": {"type": "boolean"},
        "platform": {"type": "string", "description": "OS/ARCH[/VARIANT] for every image without its own."},
        "mirrors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Registry host -> mirror hosts, overriding the server's map for those registries."},
        "mirror_auth": {"type": "object", "description": "Mirror host -> its own auth_config."},
        "preheat": {"type": "object", "required": ["to"], "additionalProperties": False,
                    "properties": {"to": {"type": "string",
                                          "description": "The site registry, HOST[:PORT]; one the server's "
                                                         "--preheat-site names."}},
                    "description": "POST /jobs only: copy the images from their origin to this site registry "
                                   "(skopeo copy --all --preserve-digests) instead of pulling them."},
        "timeout": {"oneOf": [{"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"},
                              {"type": "number", "minimum": 0, "exclusiveMinimum": True}]},
    },
}


_JOB_IMAGE = {
    "type": "object",
    "required": ["index", "image", "tag", "project", "phase", "attempts", "progress", "bytes_done", "bytes_total"],
    "properties": {
        "index": {"type": "integer"}, "image": {"type": "string"}, "tag": {"type": "string"},
        "project": {"type": "string"},
        "phase": {"type": "string", "enum": ["waiting", "pulling", "retrying", "succeeded", "failed", "cancelled"]},
        "attempts": {"type": "integer"}, "progress": {"type": "number", "minimum": 0, "maximum": 100},
        "bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer"},
        "row": {"$ref": "#/components/schemas/Row"},
    },
}
_JOB = {
    "type": "object",
    "required": ["id", "kind", "status", "created", "progress", "desired", "active", "succeeded", "failed"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"type": "string", "enum": ["job", "pull", "preheat"],
                 "description": "Made by POST /jobs, POST /pull, or POST /jobs with preheat (a copy to a site)."},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled",
                                              "interrupted"]},
        "created": {"type": "string", "format": "date-time"},
        "started": {"type": "string", "format": "date-time", "nullable": True},
        "finished": {"type": "string", "format": "date-time", "nullable": True},
        "progress": {"type": "number", "minimum": 0, "maximum": 100, "description": "From layer bytes."},
        "resumed": {"type": "integer", "description": "Times resumed after a restart."},
        "desired": {"type": "integer"}, "active": {"type": "integer"}, "succeeded": {"type": "integer"},
        "failed": {"type": "integer"}, "cancelled": {"type": "integer"},
        "error": {"type": "string"},
        "images": {"type": "array", "items": {"$ref": "#/components/schemas/JobImage"}},
        "report": {"allOf": [{"$ref": "#/components/schemas/PullReport"}], "nullable": True,
                   "description": "When the job has ended: what POST /pull would have answered."},
    },
}
_EVENTS = {"description": "The job's state, then its live events (attempt, progress, retry, done), last its "
                          "report: one JSON object a line, or Server-Sent Events with Accept: text/event-stream.",
           "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                       "text/event-stream": {"schema": {"type": "string"}}}}
_JOB_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _json(schema_ref, description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/" + schema_ref}}}}


def openapi_document(version):
    errors = {
        "400": _json("Error", "Bad input; field names the culprit."),
        "401": _json("Error", "A token is configured and was not given."),
        "408": _json("Error", "The body did not arrive in time."),
        "413": _json("Error", "Body too large."),
        "503": _json("Error", "The Docker daemon is unreachable, or the job store cannot be written "
                              "(field state_dir, Retry-After)."),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "puller", "version": version,
                 "description": "Make the host's Docker daemon pull many images concurrently, with retries."},
        "paths": {
            "/ping": {"get": {"operationId": "ping", "security": [],
                              "responses": {"200": {"description": "Alive.",
                                                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/debug/dump": {"get": {"operationId": "dump", "responses": {
                "200": {"description": "Settings, open file descriptors, start time, version, pulls in flight.",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": errors["401"]}}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {
                "200": {"description": "Prometheus metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": errors["401"]}}},
            "/openapi.json": {"get": {"operationId": "openapi", "responses": {
                "200": {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": errors["401"]}}},
            "/pull": {"post": {
                "operationId": "pull",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PullRequest"}}}},
                "responses": dict(errors, **{
                    "200": dict(_json("PullReport", "Every image succeeded. With Accept: application/x-ndjson, the "
                                                    "job's events as they happen, the last line being "
                                                    '{"type": "report", "ok": ..., ...the report}.'),
                                **{}),
                    "500": _json("PullReport", "At least one image failed; same body shape."),
                }),
            }},
            "/jobs": {
                "post": {
                    "operationId": "createJob",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/PullRequest"}}}},
                    "responses": dict(errors, **{
                        "202": {"description": "Queued; Location names the job.",
                                "content": {"application/json": {"schema": {"type": "object"}}}},
                        "429": _json("Error", "Too many jobs queued or running (Retry-After)."),
                    }),
                },
                "get": {
                    "operationId": "listJobs",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": [
                            "queued", "running", "succeeded", "failed", "cancelled", "interrupted"]}},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}}],
                    "responses": {"200": {"description": "Newest first.", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {
                            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}},
                        "400": errors["400"], "401": errors["401"]},
                },
            },
            "/jobs/{id}": {
                "get": {"operationId": "getJob", "parameters": _JOB_ID, "responses": {
                    "200": _json("Job", "The job."), "404": _json("Error", "No such job."), "401": errors["401"]}},
                "delete": {"operationId": "cancelJob", "parameters": _JOB_ID, "responses": {
                    "200": _json("Job", "Cancelled: queued images never start, running attempts are aborted."),
                    "404": _json("Error", "No such job."), "409": _json("Error", "The job has ended."),
                    "401": errors["401"]}},
            },
            "/jobs/{id}/events": {"get": {"operationId": "jobEvents", "parameters": _JOB_ID, "responses": {
                "200": _EVENTS, "404": _json("Error", "No such job."), "401": errors["401"]}}},
        },
        "components": {
            "schemas": {"Error": _ERROR, "Row": _ROW, "PullReport": _REPORT, "Image": _IMAGE,
                        "PullRequest": _PULL_REQUEST, "Job": _JOB, "JobImage": _JOB_IMAGE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
