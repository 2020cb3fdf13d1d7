"""What ``puller pull`` prints for people.

The table is read at a glance: aligned columns, durations rounded for people
(``0.70s``; ``--json`` keeps Go durations), failures last and marked, one
summary line. Colour only when stdout is a terminal.
"""

import sys

from puller.core._engine import row_reference
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
