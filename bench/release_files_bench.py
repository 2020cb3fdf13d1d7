"""Reading release files (``puller pull -f FILE``): time and peak memory on big and hostile files.

Writes the files to a directory, then runs ``puller pull -f FILE`` for each under ``/usr/bin/time -v``
with a daemon socket that does not exist, so the run ends right after the file is read (exit 3 when
the file was accepted, 2 when it was refused). CPU seconds are user + system: on a busy machine they
say more than the wall clock. Run it against another checkout with ``--pythonpath``:

    .venv/bin/python bench/release_files_bench.py /tmp/release-files
    .venv/bin/python bench/release_files_bench.py /tmp/release-files --pythonpath /tmp/puller-orig

(for a ``git archive`` copy, link ``puller/core`` to ``../plugins/module_utils`` as the package does).

On an idle 2-core machine, libyaml 0.2.5 (wall s / CPU s / peak RSS; about 0.5 s of each run is the
start of Python and the imports):

    file (size)              events, never built        safe_load_all + walk (before)
    compose, 80000 services  3.2 / 3.1 / 65 MiB         93 / 83 / 848 MiB
    (12.9 MB, 500 images)
    billion laughs (10^9)    0.5 / 0.5 / 33 MiB, exit 2  > 150 s (232 s CPU when let run), then exit 2
                                                         with "invalid reference format: 'a0: ...'"
    a: &a [*a]               0.5 / 0.5 / 33 MiB, exit 2  exit 1, RecursionError traceback
    5000 x "["               0.7 / 0.5 / 33 MiB, exit 2  3.6 / 2.4 s, exit 1, RecursionError traceback
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


def compose(services=80000, images=500):
    """A compose file of about 13 MB: ``services`` services over ``images`` distinct images."""
    parts = ["services:\n"]
    for n in range(services):
        parts.append("  svc-%06d:\n    image: registry.example.com:5000/team/app-%04d:1.2.3\n"
                     "    restart: unless-stopped\n    ports: [\"8080:80\"]\n    environment:\n"
                     "      LOG_LEVEL: info\n" % (n, n % images))
    return "".join(parts)


def billion_laughs(levels=9, width=9):
    lines = ['a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        lines.append("a%d: &a%d [%s]" % (n, n, ", ".join(["*a%d" % (n - 1)] * width)))
    return "\n".join(lines) + "\n"


FILES = {
    "compose-13mb.yml": compose,
    "billion-laughs.yml": billion_laughs,
    "self-alias.yml": lambda: "a: &a [*a]\n",
    "deep-5000.yml": lambda: "[" * 5000 + "]" * 5000 + "\n",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--pythonpath", help="run the puller package found here instead")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    print("%-20s %9s %5s %8s %8s %10s  %s" % (
        "FILE", "SIZE", "EXIT", "WALL s", "CPU s", "PEAK RSS", "STDERR (last line)"))
    for name, make in FILES.items():
        path = args.dir / name
        if not path.exists():
            path.write_text(make())
        command = ["/usr/bin/time", "-v", sys.executable, "-m", "puller", "pull",
                   "--docker-socket", str(args.dir / "no-daemon.sock"), "-f", str(path)]
        t0 = time.monotonic()
        # Its own session: on a timeout, /usr/bin/time and the puller under it are killed together.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=str(args.dir), start_new_session=True)
        try:
            _out, err = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            print("%-20s %8.1fM %5s %8s %8s %10s  %s" % (name, path.stat().st_size / 1e6, "-", ">%d" % args.timeout,
                                                         "-", "-", "timed out"))
            continue
        took = time.monotonic() - t0
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        cpu = sum(float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err))
        ours = [line for line in err.splitlines() if not line.startswith("\t") and "Command " not in line]
        print("%-20s %8.1fM %5d %8.2f %8.2f %6.0f MiB  %s" % (
            name, path.stat().st_size / 1e6, proc.returncode, took, cpu, int(rss.group(1)) / 1024 if rss else -1,
            (ours[-1] if ours else "")[:100]))


if __name__ == "__main__":
    main()
