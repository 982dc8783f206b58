"""``python -m backbones``: the command line over the library, one module per command group.

``runner`` builds the parser from the groups (``core``: list, predict, compare, weights, import-weights, download;
``measure``: bench, results; ``summary``; ``data``: eval, logs) and turns every user error into ``error: <one
line>`` with exit code 2. ``common`` holds what the groups share (model arguments, JSON output, tables, progress).
"""

from backbones.cli.runner import ArgumentParser, build_parser, main, run

__all__ = ["ArgumentParser", "build_parser", "main", "run"]
