"""The ``hemascope`` command: ``hemascope <group> <verb> [options]``.

Each command module registers its verbs; handlers only parse, call the core, and print.
Exit codes: 0 success, 1 bad input or failed run (a one-line ``error:`` on stderr),
2 usage error (argparse), 3 ``--strict`` and problems were found, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from hemascope import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PROBLEMS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    from hemascope.cli import (adapt, analyze, data, detect, explain, export, predict, report,
                               segment, serve, stain, train)

    parser = argparse.ArgumentParser(
        prog="hemascope",
        description="White-blood-cell differentials with evidence from smear images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hemascope {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    data.register(groups)
    train.register(groups)
    predict.register(groups)
    detect.register(groups)
    analyze.register(groups)
    serve.register(groups)
    explain.register(groups)
    stain.register(groups)
    adapt.register(groups)
    report.register(groups)
    segment.register(groups)
    export.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``console_scripts`` passes it to ``sys.exit``)."""
    from hemascope.errors import HemascopeError
    from hemascope.io.atomic import guarding_inputs

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with guarding_inputs():  # no output may overwrite a file the command read
            return int(args.handler(args) or EXIT_OK)
    except HemascopeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a place that cannot be written, a file that vanished...
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("error: out of memory (an image or batch too large for this machine?)",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hemascope ... | head`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
