"""``python -m backbones``: the command line over the library.

Each area registers its sub-commands from ``backbones.cli``. User errors
print ``error: <one line>`` on stderr and exit 2; ``--json`` prints exactly one
JSON document on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from backbones.errors import BackboneError

COMMAND_MODULES = (
    "backbones.cli.core",
    "backbones.cli.measure",
    "backbones.cli.summary",
    "backbones.cli.data",
    "backbones.cli.transfer",
    "backbones.cli.finetune",
)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other user error
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = "python -m backbones", modules=COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Backbone Lens: compare and explain CNN backbones.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # an area not built yet
                continue
            raise
        module.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except BackboneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        from backbones.inference.device import describe_out_of_memory, is_out_of_memory

        if is_out_of_memory(exc):  # the user's choice of model, batch or device: advice, not a bug
            print(f"error: {describe_out_of_memory(getattr(args, 'device', None) or 'the device')}", file=sys.stderr)
            return 2
        if os.environ.get("BACKBONES_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0][:300]
        print(f"error: unexpected {type(exc).__name__}: {first} (set BACKBONES_DEBUG=1 for details)", file=sys.stderr)
        return 1
    return int(code or 0)


def main(argv=None) -> int:
    return run(build_parser(), argv)
