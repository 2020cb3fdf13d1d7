"""Turn bench/results/*.json into the README's benchmark section and bench/chart.png.

    python bench/report.py        # run by bench/run.sh after the benchmarks
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def pull_table(rows):
    out = ["| preset | method | median (s) | runs (s) | / xargs -P | / docker-py threads |",
           "| --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        out.append("| %s (%d images) | %s | %.2f | %s | %s | %s |" % (
            r["preset"], r["images"], r["method"], r["median_s"], " ".join("%.2f" % t for t in r["runs"]),
            "%.2f" % r["ratio_to_xargs"] if r.get("ratio_to_xargs") else "-",
            "%.2f" % r["ratio_to_threads"] if r.get("ratio_to_threads") else "-"))
    return out


def ansible_table(rows):
    loop = {r["hosts"]: r["median_s"] for r in rows if r["method"] == "community.docker loop"}
    out = ["| hosts | method | median (s) | runs (s) | / xargs -P | loop / method |",
           "| ---: | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        out.append("| %d | %s | %.2f | %s | %.2f | %s |" % (
            r["hosts"], r["method"], r["median_s"], " ".join("%.2f" % t for t in r["runs"]), r["ratio_to_xargs"],
            "%.1fx" % (loop[r["hosts"]] / r["median_s"]) if r["hosts"] in loop else "-"))
    return out


def cri_table(rows):
    out = ["| method | median (s) | runs (s) | / PullImage threads | / puller |", "| --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        runs = " ".join("%.2f" % t for t in r["runs"])
        cells = (r["method"], r["median_s"], runs, r["ratio_to_threads"], r["ratio_to_puller"])
        out.append("| %s | %.2f | %s | %.2f | %.2f |" % cells)
    return out


def chart(pull, ansible):
    groups = []
    for r in pull or []:
        groups.append(("%s" % r["preset"], r["method"], r["median_s"]))
    for r in ansible or []:
        groups.append(("ansible, %d host%s" % (r["hosts"], "s" if r["hosts"] > 1 else ""), r["method"], r["median_s"]))
    presets = list(dict.fromkeys(g[0] for g in groups))
    if not presets:
        return  # nothing measured that the chart shows
    methods = list(dict.fromkeys(g[1] for g in groups))
    fig, axes = plt.subplots(1, len(presets), figsize=(3.2 * len(presets), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, preset in zip(axes[0], presets):
        items = [(m, s) for p, m, s in groups if p == preset]
        ax.bar(range(len(items)), [s for _m, s in items], color=[colors(methods.index(m)) for m, _s in items])
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels([m for m, _s in items], rotation=40, ha="right", fontsize=7)
        ax.set_title(preset, fontsize=9)
        ax.set_ylabel("seconds (median)", fontsize=8)
    fig.suptitle("puller vs the alternatives (lower is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "chart.png", dpi=110)


def main():
    pull, ansible, server = _load("pull.json"), _load("ansible.json"), _load("server.json")
    jobs, fleet, cri = _load("jobs.json"), _load("fleet.json"), _load("cri.json")
    lines = [START, "", "![benchmark chart](bench/chart.png)", ""]
    if pull:
        lines += ["Engine and server (`bench/bench.py`, concurrency 10):", ""] + pull_table(pull) + [""]
    if ansible:
        lines += ["Ansible, 60 small images (`bench/ansible_bench.py`):", ""] + ansible_table(ansible) + [""]
    if server:
        lines += ["Server under load (`bench/server_bench.py`):", "", "| measure | value | note |",
                  "| --- | --- | --- |"] + ["| %s | %s | %s |" % tuple(row) for row in server] + [""]
    if fleet:
        lines += ["Fleet, few-large release over a 200 Mbit/s link: direct, a pull-through mirror, a preheated site "
                  "(`bench/fleet_bench.py`):",
                  "", "![fleet chart](bench/fleet.png)", "", "| hosts, method | result | note |",
                  "| --- | --- | --- |"] + ["| %s | %s | %s |" % tuple(row) for row in fleet] + [""]
    if cri:
        lines += ["Kubernetes nodes, 60 small images into containerd through the CRI (`bench/cri_bench.py`, "
                  "concurrency 10):", ""] + cri_table(cri) + [""]
    if jobs:
        lines += ["Jobs (`bench/jobs_bench.py`):", "", "| measure | value | note |",
                  "| --- | --- | --- |"] + ["| %s | %s | %s |" % tuple(row) for row in jobs] + [""]
    lines.append(END)
    chart(pull, ansible)
    text = README.read_text()
    if START in text:
        text = text[:text.index(START)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text += "\n## Benchmarks\n\n" + "\n".join(lines) + "\n"
    README.write_text(text)


if __name__ == "__main__":
    main()
