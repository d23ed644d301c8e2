"""The ``numap-worker`` command: ``serve`` and ``keygen``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._auth import AuthenticationError, keygen, load_key
from .._policy import DEFAULT as DEFAULT_POLICY
from .._policy import POLICIES
from .._remote import MAX_MESSAGE

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numap-worker", description="Serve numap worker processes to other hosts.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve", help="serve worker processes until Ctrl-C or SIGTERM",
        description="Serve worker processes to NuMap clients. Without --auth the server "
                    "binds to loopback addresses only; with it, every client must hold "
                    "the same key file.")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                       help="where to listen (default tcp://127.0.0.1:5555; port 0: any "
                            "free port, printed at start)")
    serve.add_argument("--workers", "-w", type=int, default=None, metavar="N",
                       help="worker processes (default: the number of CPUs)")
    serve.add_argument("--auth", metavar="KEYFILE",
                       help="the key file clients must hold (see keygen)")
    serve.add_argument("--max-message", type=int, default=MAX_MESSAGE, metavar="BYTES",
                       help=f"the largest message taken (default {MAX_MESSAGE}); a client "
                            "sending a larger one is disconnected")
    serve.add_argument("--policy", choices=list(POLICIES), default=DEFAULT_POLICY,
                       help="how the system schedules the worker processes (default "
                            f"{DEFAULT_POLICY}: as batch work, see NuMap's worker_policy)")
    serve.add_argument("--verbose", "-v", action="store_true", help="log connections")
    keys = commands.add_parser("keygen", help="write a new key file (mode 0600)")
    keys.add_argument("path", metavar="KEYFILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit code (0, or 2 for a bad command line, key or address)."""
    args = _parser().parse_args(argv)
    if args.command == "keygen":
        try:
            path = keygen(args.path)
        except OSError as error:
            print(f"numap-worker keygen: {error}", file=sys.stderr)
            return 2
        print(f"numap-worker keygen: wrote {path} (mode 0600); copy it to the client hosts "
              "over a safe channel")
        return 0
    from ._server import serve

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="numap-worker: %(levelname)s: %(message)s")
    try:
        key = load_key(args.auth) if args.auth else None
        serve(args.bind, args.workers, key, args.max_message, args.policy)
    except (OSError, ValueError, AuthenticationError) as error:
        print(f"numap-worker serve: {error}", file=sys.stderr)
        return 2
    return 0
