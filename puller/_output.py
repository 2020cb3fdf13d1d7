"""What ``puller pull`` prints for people, and where it reads release files.

The table is read at a glance: aligned columns, durations rounded for people
(``0.70s``; ``--json`` keeps Go durations), failures last and marked, one
summary line. Colour only when stdout is a terminal.
"""

import sys

import yaml

from puller.core._engine import row_reference
from puller.core._errors import InvalidRequest
from puller.core._godur import parse_duration

OK_STATUSES = ("pulled", "up_to_date", "present", "would_pull")


def human_duration(go_duration):
    seconds = parse_duration(go_duration)
    if seconds < 60:
        return "%.2fs" % seconds
    minutes, seconds = divmod(seconds, 60)
    return "%dm%02.0fs" % (minutes, seconds)


def table(report, colour=None):
    """The report as lines of text: successes, then failures (marked), then the summary."""
    colour = sys.stdout.isatty() if colour is None else colour
    rows = list(report["success"]) + list(report["failure"])
    cells = [(r["status"], row_reference(r), human_duration(r["cost"]), str(r["retried"]), r["errmsg"]) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(("STATUS", "IMAGE", "TIME", "TRIES"))]
    lines = ["  %-*s  %-*s  %*s  %*s  %s" % (widths[0], "STATUS", widths[1], "IMAGE", widths[2], "TIME", widths[3],
                                             "TRIES", "ERROR")]
    for row, (status, image, took, tries, error) in zip(rows, cells):
        failed = row["status"] not in OK_STATUSES
        line = "%s %-*s  %-*s  %*s  %*s  %s" % ("!" if failed else " ", widths[0], status, widths[1], image,
                                                widths[2], took, widths[3], tries, error)
        lines.append(_paint(line.rstrip(), "31" if failed else None, colour))
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    order = ("pulled", "up_to_date", "present", "would_pull", "failed", "cancelled")
    summary = ", ".join("%d %s" % (counts[s], s.replace("_", " ")) for s in order if counts.get(s))
    lines.append("%s in %s" % (summary or "nothing", human_duration(report["cost"])))
    return lines


def _paint(text, code, colour):
    return "\033[%sm%s\033[0m" % (code, text) if colour and code else text


def images_from_file(path):
    """Every image reference in FILE (``-`` for stdin): a list, a compose file, or Kubernetes manifests."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise InvalidRequest("cannot read %s: %s" % (path, exc.strerror), "-f")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        documents = []
    if documents and all(isinstance(d, (dict, list)) for d in documents):
        found = []
        for document in documents:
            found.extend(_images_in(document))
        if found:
            return list(dict.fromkeys(found))
    refs = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    refs = [r for r in refs if r]
    if not refs:
        raise InvalidRequest("no image references in %s" % path, "-f")
    return list(dict.fromkeys(refs))


def _images_in(node):
    """``image:`` values anywhere: compose ``services.*.image``, Kubernetes containers and initContainers."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images_in(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and not isinstance(node, dict):
                continue
            yield from _images_in(item)
