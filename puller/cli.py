"""Command line: ``puller serve``, ``puller pull``, ``puller version``.

For ``serve``, gevent's monkey patching must come before anything else is
imported, so this module imports nothing at the top but ``sys``.
"""

import sys


EXIT_INTERRUPTED = 130


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["serve"]:
            from gevent import monkey

            monkey.patch_all()
        from puller._commands import run

        return run(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting up: no traceback
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
