"""``socketspec``: the command line of the framework (the server's is ``socketspec-cluster``).

Owns ``socketspec export-schema APP [--format asyncapi|socketspec|typescript] [--out FILE]``: load
the application as the server would (``package.module:attribute``, relative to the
current directory; without APP, the ``socketspec.handlers`` entry points), validate its
registrations and write its AsyncAPI 3.0 or SocketSpec JSON document, or a TypeScript module
of its event and payload types. A bad flag, APP
or output file is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from socketspec.cluster.cli import OneLineParser

PROG = "socketspec"
EXPORT_PROG = f"{PROG} export-schema"
FORMATS = ("asyncapi", "socketspec", "typescript")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="socketspec tools. The server itself is socketspec-cluster.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export-schema",
        help="write an application's AsyncAPI 3.0 or SocketSpec JSON document, or its "
        "TypeScript types",
        description="Write the machine-readable document of an application: the AsyncAPI "
        "3.0.0 document served at /asyncapi.json (--format asyncapi, the default) or the "
        "SocketSpec document served at <docs_url>/schema (--format socketspec), or a TypeScript "
        "module of its payload types and event maps for a typed client (--format typescript).",
    )
    export.add_argument(
        "app",
        nargs="?",
        default=None,
        metavar="APP",
        help="package.module:attribute naming a SocketApp (or a factory returning one), "
        "importable from the current directory; without it, the handler libraries of the "
        "'socketspec.handlers' entry-point group, as socketspec-cluster serves them",
    )
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="asyncapi",
        help="asyncapi (AsyncAPI 3.0.0, the default), socketspec or typescript",
    )
    export.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="write the document to FILE instead of standard output",
    )
    export.add_argument(
        "--host",
        default="localhost:8000",
        help="host[:port] the AsyncAPI server entry names (default localhost:8000)",
    )
    export.add_argument(
        "--path",
        default="/ws",
        help="WebSocket path the AsyncAPI channels are served at, as socketspec-cluster's "
        "--path (default /ws)",
    )
    return parser


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _fail(prog: str, message: str) -> int:
    one_line = " ".join(message.split())
    sys.stderr.write(f"{prog}: error: {one_line}\n")
    return 2


def export_schema(args: argparse.Namespace) -> int:
    from socketspec.errors import ConfigurationError
    from socketspec.loader import AppLoadError, load_app

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # APP modules are named relative to where we run
    try:
        app = load_app(args.app)
        app.registry.validate()
    except (AppLoadError, ConfigurationError) as exc:
        return _fail(EXPORT_PROG, str(exc))
    except Exception as exc:  # a factory that raised, say
        return _fail(EXPORT_PROG, f"cannot load {args.app}: {type(exc).__name__}: {exc}")

    document: dict[str, Any]
    if args.format == "typescript":
        from socketspec.apidocs.typescript import TypeScriptError, typescript_module

        try:
            text = typescript_module(app)
        except TypeScriptError as exc:
            return _fail(EXPORT_PROG, str(exc))
    else:
        if args.format == "asyncapi":
            from socketspec.apidocs.asyncapi import asyncapi_document

            document = asyncapi_document(app, host=args.host, path=args.path)
        else:
            from socketspec.apidocs.schema import socketspec_schema

            document = socketspec_schema(app)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    if args.out is None or args.out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        return _fail(EXPORT_PROG, f"cannot write {args.out}: {exc.strerror or exc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad command line (already reported)
        return _exit_code(exc)
    if args.command == "export-schema":
        return export_schema(args)
    return _fail(PROG, f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
