"""The CLI's commands. ``puller.cli`` imports this after any monkey patching.

Exit codes: 0 success, 1 at least one image failed (or the server refused), 2 bad input,
3 the Docker daemon (for a preheat: the site registry, or skopeo) is unreachable, 130 interrupted (Ctrl-C).
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

import puller
from puller import settings
from puller.config import from_sources
from puller.core._errors import DaemonUnavailable, InvalidRequest, PullerError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DAEMON = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
# The daemon connection, with the docker CLI's flag names.
DAEMON_SETTINGS = ("docker_socket", "runtime_endpoint", "tlsverify", "tlscacert", "tlscert", "tlskey")
# A preheat: the site's credentials (the mirror credentials file) and the registries spoken to in plain HTTP.
PREHEAT_SETTINGS = ("mirror_auth_file", "insecure_registry")
INTERRUPT_GRACE = 3.0


def _parser():
    parser = argparse.ArgumentParser(prog="puller", description=puller.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    settings.add_arguments(serve)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    pull = sub.add_parser("pull", help="pull images now: through the engine here, or as a job on a server")
    pull.add_argument("images", nargs="*", metavar="IMAGE", help="reference, e.g. busybox:1.36 or reg:5000/a/b@sha256:...")
    pull.add_argument("-f", "--file", action="append", default=[], metavar="FILE",
                      help="read images from FILE (repeatable; - for stdin): one reference a line (# comments), a "
                           "compose file (services.*.image) or Kubernetes manifests (every image:)")
    pull.add_argument("--digests", metavar="FILE",
                      help="a preheat's --json report: its images, each pulled by its digest through the mirrors "
                           "(the origin is not asked), then tagged")
    pull.add_argument("--pull", choices=["always", "missing"], default="always",
                      help="missing: leave images that are present alone")
    pull.add_argument("--platform", help="OS/ARCH[/VARIANT] to pull, e.g. linux/arm64")
    settings.add_arguments(pull, names=DAEMON_SETTINGS)
    _run_arguments(pull, concurrency=10, json_help="print the report as the API's JSON body")
    pull.add_argument("--mirror", action="append", metavar="REGISTRY=MIRROR[,MIRROR]",
                      help="mirrors to try before the origin, repeatable (with --server, the server must allow "
                           "request mirrors)")
    _job_arguments(pull)

    preheat = sub.add_parser("preheat", help="copy images from their origin into a site registry, byte for byte "
                                             "(skopeo copy --all --preserve-digests), for hosts to pull by digest")
    preheat.add_argument("images", nargs="*", metavar="IMAGE", help="reference at its origin, e.g. reg:5000/a/b:1.2")
    preheat.add_argument("-f", "--file", action="append", default=[], metavar="FILE",
                         help="read images from FILE, as puller pull -f does")
    preheat.add_argument("--to", required=True, metavar="SITE", help="the site registry, HOST[:PORT]")
    settings.add_arguments(preheat, names=PREHEAT_SETTINGS)
    _run_arguments(preheat, concurrency=4, json_help="print the report as JSON: the rows, each with its digest "
                                                     "(puller pull --digests FILE takes it)")
    _job_arguments(preheat)

    jobs = sub.add_parser("jobs", help="list a server's jobs, or show one")
    jobs.add_argument("id", nargs="?", help="the job to show; without it, the newest jobs")
    _server_arguments(jobs, required=True)
    jobs.add_argument("--status", help="only jobs in this status")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="print the API's JSON")
    jobs.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    sub.add_parser("version", help="print the version")
    return parser


def _run_arguments(parser, concurrency, json_help):
    """What shapes a run of ``pull`` and ``preheat``."""
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--retry", type=int, default=3, help="attempts per image")
    parser.add_argument("--deadline", help="per-image deadline, Go duration (default 30m)")
    parser.add_argument("--json", action="store_true", help=json_help)


def _job_arguments(parser):
    """Where ``pull`` and ``preheat`` run: here, or as a job on a server."""
    _server_arguments(parser)
    parser.add_argument("--cancel-on-interrupt", action="store_true",
                        help="with --server: Ctrl-C cancels the job instead of leaving it running")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _images(args, *more):
    """The images of the arguments and of ``-f`` files, then ``more`` (lists of images); at least one."""
    from puller._release_files import images_from_file

    images = list(args.images)
    for path in args.file:
        images.extend(images_from_file(path))
    for found in more:
        images.extend(found)
    if not images:
        raise InvalidRequest("give images as arguments%s" % (
            ", with -f FILE or with --digests FILE" if hasattr(args, "digests") else " or with -f FILE"), "images")
    return images


def _server_arguments(parser, required=False):
    parser.add_argument("--server", required=required, metavar="URL",
                        help="a puller server, e.g. http://127.0.0.1:9006 (env PULLER_SERVER)",
                        default=os.environ.get("PULLER_SERVER") or None)
    parser.add_argument("--token-file", metavar="FILE", help="its API token (or the token itself in PULLER_TOKEN)")


def _token(args):
    if args.token_file:
        from puller.config import _read_token

        return _read_token(args.token_file)
    return (os.environ.get("PULLER_TOKEN") or "").strip() or None


def _config(args):
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "log_level", "images", "id")}
    return from_sources(flags)


def _serve(args):
    from puller.server.serve import serve  # gevent is patched by now

    return serve(_config(args))


def _pull(args):
    from puller.core._credentials import HostCredentials
    from puller.core._engine import Engine
    from puller.core._request import parse_pull_request

    from puller._release_files import images_from_report

    images = _images(args, images_from_report(args.digests) if args.digests else [])
    body = {"images": images, "concurrency": args.concurrency, "retry": args.retry, "pull": args.pull}
    if args.platform:
        body["platform"] = args.platform
    mirrors = _mirrors(args.mirror)
    if args.server:
        if mirrors:
            body["mirrors"] = dict((registry, list(hosts)) for registry, hosts in mirrors.items())
        if args.deadline:
            body["timeout"] = args.deadline
        return _pull_on_server(args, body)
    flags = {name: getattr(args, name, None) for name in DAEMON_SETTINGS}
    flags["deadline"] = args.deadline
    config = from_sources(flags, names=DAEMON_SETTINGS + ("deadline", "docker_cert_path"))
    # Like docker pull: the host's credentials (config.json, credential helpers).
    engine = Engine(config.engine_config(), credentials=HostCredentials(), runtime=config.runtime())
    return _run_here(engine, parse_pull_request(body, mirrors=mirrors, runtime=engine.runtime), args.json)


def _preheat(args):
    from puller.config import read_mirror_auth
    from puller.core._credentials import HostCredentials
    from puller.core._preheat import parse_preheat_request

    images = _images(args)
    body = {"images": images, "concurrency": args.concurrency, "retry": args.retry,
            "preheat": {"to": args.to}}
    if args.deadline:
        body["timeout"] = args.deadline
    if args.server:
        return _pull_on_server(args, body)
    _site, request = parse_preheat_request(body, allowed_sites=None)
    flags = {name: getattr(args, name, None) for name in PREHEAT_SETTINGS}
    flags["deadline"] = args.deadline
    config = from_sources(flags, names=PREHEAT_SETTINGS + ("deadline",))
    # The origin's credentials as docker pull finds them; the site's are the mirror credentials.
    preheaters = config.preheaters(read_mirror_auth(config.mirror_auth_file), credentials=HostCredentials())
    engine = preheaters.engine(_site)
    try:
        return _run_here(engine, request, args.json)
    finally:
        preheaters.close()


def _run_here(engine, request, as_json):
    """Run ``request`` on ``engine`` in this process, drawing its progress; the exit code."""
    from puller._progress import ProgressPrinter

    cancel, done = threading.Event(), threading.Event()
    outcome = {}

    def work():
        try:
            outcome["report"] = engine.pull(request, on_event=progress.on_event, cancel=cancel)
        except BaseException as exc:  # pylint: disable=broad-except
            outcome["error"] = exc
        finally:
            done.set()

    with ProgressPrinter(total=len(request.specs), enabled=not as_json) as progress:
        worker = threading.Thread(target=work, name="pull", daemon=True)
        worker.start()
        interrupted = _wait_interruptibly(done, cancel)
    if "error" in outcome:
        raise outcome["error"]
    report = outcome.get("report")
    if report is not None:
        _print_report(report, as_json)
    if interrupted:
        print("puller: interrupted; the pulls in flight were aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED


def _mirrors(entries):
    from puller.core._mirrors import parse_setting

    try:
        return parse_setting(entries or [])
    except ValueError as exc:
        raise InvalidRequest(str(exc), "--mirror")


def _pull_on_server(args, body):
    from puller._progress import ProgressPrinter
    from puller._remote import ServerClient

    client = ServerClient(args.server, _token(args))
    job = client.create_job(body)
    done, outcome = threading.Event(), {}

    def watch():
        try:
            for event in client.events(job["id"]):
                progress.on_job_event(event)
                if event.get("type") == "report":
                    outcome["report"] = event
        except BaseException as exc:  # pylint: disable=broad-except
            outcome["error"] = exc
        finally:
            done.set()

    with ProgressPrinter(total=job["desired"], enabled=not args.json) as progress:
        threading.Thread(target=watch, name="events", daemon=True).start()
        interrupted = _wait_interruptibly(done, None)
        if interrupted and args.cancel_on_interrupt:
            client.cancel(job["id"])
            done.wait(INTERRUPT_GRACE)
    if interrupted and not args.cancel_on_interrupt:
        print("puller: detached; job %s goes on on the server (puller jobs %s --server %s)"
              % (job["id"], job["id"], args.server), file=sys.stderr)
        return EXIT_INTERRUPTED
    if "error" in outcome and "report" not in outcome:
        raise outcome["error"]
    report = outcome.get("report")
    if report is None:
        return EXIT_INTERRUPTED
    if "success" not in report:  # the job ended without a report: the server's daemon was unreachable
        raise DaemonUnavailable(report.get("error") or "the job ended without a report")
    _print_rows(report, args.json)
    if interrupted:
        print("puller: interrupted; job %s was cancelled" % job["id"], file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _jobs(args):
    from puller._remote import ServerClient, print_job, print_jobs

    client = ServerClient(args.server, _token(args))
    if args.id:
        print_job(client.job(args.id), args.json)
    else:
        print_jobs(client.jobs(args.status, args.limit), args.json)
    return EXIT_OK


def _wait_interruptibly(done, cancel):
    """Wait for the pull; the first Ctrl-C cancels it (closing the daemon
    streams) and waits a moment for the rows, a second one leaves at once.

    An Event, not ``Thread.join``: a join interrupted by KeyboardInterrupt
    can take the thread for finished (CPython before 3.13).
    """
    try:
        while not done.wait(0.2):
            pass
        return False
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, lambda *_a: os._exit(EXIT_INTERRUPTED))
        if cancel is not None:
            cancel.set()
            done.wait(INTERRUPT_GRACE)
        return True


def _print_report(report, as_json):
    _print_rows(report.as_dict(), as_json)


def _print_rows(report, as_json):
    from puller._output import table

    if as_json:
        print(json.dumps({k: report[k] for k in ("success", "failure", "startAt", "cost")}, indent=2))
        return
    for line in table(report):
        print(line)


def run(argv):
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "version":
        print("puller %s" % puller.__version__)
        return EXIT_OK
    try:
        return {"serve": _serve, "pull": _pull, "preheat": _preheat, "jobs": _jobs}[args.command](args)
    except KeyboardInterrupt:  # before the pull started, or in serve's start-up
        signal.signal(signal.SIGINT, lambda *_a: os._exit(EXIT_INTERRUPTED))
        return EXIT_INTERRUPTED
    except InvalidRequest as exc:
        print("puller: %s: %s" % (exc.field, exc.message), file=sys.stderr)
        return EXIT_USAGE
    except DaemonUnavailable as exc:
        print("puller: %s" % exc, file=sys.stderr)
        return EXIT_DAEMON
    except PullerError as exc:
        print("puller: %s" % exc, file=sys.stderr)
        return EXIT_FAILED
