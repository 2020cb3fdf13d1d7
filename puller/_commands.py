"""The CLI's commands. ``puller.cli`` imports this after any monkey patching.

Exit codes: 0 success, 1 at least one image failed, 2 bad input,
3 the Docker daemon is unreachable.
"""

import argparse
import json
import logging
import sys

import puller
from puller import settings
from puller.config import from_sources
from puller.core._errors import DaemonUnavailable, InvalidRequest

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DAEMON = 0, 1, 2, 3


def _parser():
    parser = argparse.ArgumentParser(prog="puller", description=puller.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    settings.add_arguments(serve)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    pull = sub.add_parser("pull", help="pull images now, through the engine, without a server")
    pull.add_argument("images", nargs="+", metavar="IMAGE", help="reference, e.g. busybox:1.36 or reg:5000/a/b@sha256:...")
    settings.add_arguments(pull, names=("docker_socket",))
    pull.add_argument("--concurrency", type=int, default=10)
    pull.add_argument("--retry", type=int, default=3, help="attempts per image")
    pull.add_argument("--deadline", help="per-image deadline, Go duration (default 30m)")
    pull.add_argument("--json", action="store_true", help="print the report as the API's JSON body")
    pull.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    sub.add_parser("version", help="print the version")
    return parser


def _config(args):
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "log_level", "images")}
    return from_sources(flags)


def _serve(args):
    from puller.server.serve import serve  # gevent is patched by now

    return serve(_config(args))


def _pull(args):
    from puller._progress import ProgressPrinter
    from puller.core._engine import Engine, row_reference
    from puller.core._request import parse_pull_request

    config = from_sources({"docker_socket": args.docker_socket, "deadline": args.deadline})
    request = parse_pull_request({"images": args.images, "concurrency": args.concurrency, "retry": args.retry})
    engine = Engine(config.engine_config())
    with ProgressPrinter(total=len(request.specs), enabled=not args.json) as progress:
        report = engine.pull(request, on_event=progress.on_event)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for row in report.success + report.failure:
            name = row_reference(row)
            print("%-10s %s  %s  attempts=%d %s" % (row["status"], name, row["cost"], row["retried"], row["errmsg"]))
    return EXIT_OK if report.ok else EXIT_FAILED


def run(argv):
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "version":
        print("puller %s" % puller.__version__)
        return EXIT_OK
    try:
        return _serve(args) if args.command == "serve" else _pull(args)
    except InvalidRequest as exc:
        print("puller: %s: %s" % (exc.field, exc.message), file=sys.stderr)
        return EXIT_USAGE
    except DaemonUnavailable as exc:
        print("puller: %s" % exc, file=sys.stderr)
        return EXIT_DAEMON
