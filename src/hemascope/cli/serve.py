"""``hemascope serve``: the main job as a web page and a JSON API (thin: see hemascope.web)."""

from __future__ import annotations

import argparse
import sys

from hemascope.cli._common import Formatter, number
from hemascope.cli.analyze import add_analysis_options, analysis_options

#: Hosts that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser(
        "serve", formatter_class=Formatter, help="the main job as a web page and JSON API",
        description="Serve `analyze` to a browser: open http://HOST:PORT/, choose smear "
                    "photographs or single-cell crops, and get each image's cells drawn and "
                    "typed with the differential. POST /api/analyze (form field 'files') "
                    "answers JSON; GET /api/health describes the service. Models load once "
                    "at start; images are analysed on this machine and not kept. Needs the 'web' "
                    "extra (pip install 'hemascope[web]').")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 opens the service to the network "
                        "(there is no login: anyone who reaches the port can send images)")
    p.add_argument("--port", type=number(int, 1, 65535), default=8000, help="port")
    add_analysis_options(p)
    p.add_argument("--max-files", type=number(int, 1), default=50, help="images per request")
    p.add_argument("--max-mb", type=number(float, 0, low_open=True), default=50.0,
                   help="size of one uploaded file in MB")
    p.add_argument("--max-request-mb", type=number(float, 0, low_open=True), default=200.0,
                   help="size of one request in MB (uploads are held in memory while it runs)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from hemascope.errors import HemascopeError
    from hemascope.web import Service, ServiceLimits, create_app

    try:
        import uvicorn
    except ImportError:
        raise HemascopeError("`hemascope serve` needs uvicorn and FastAPI: "
                             "pip install 'hemascope[web]'") from None
    service = Service(analysis_options(args), ServiceLimits(
        max_files=args.max_files, max_mb=args.max_mb, max_request_mb=args.max_request_mb))
    app = create_app(service)
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who can reach port {args.port} can "
              "send images (there is no login)", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hemascope serving on http://{shown}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
