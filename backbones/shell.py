"""Command lines the tool writes or prints: every value quoted by the shell's own rules.

:func:`format_command` is the one place an argument list becomes a shell line (slide packs'
``commands.sh``, hints that name a command): each value goes through :func:`shlex.quote`, so a
checkpoint or photo named ``$(rm -rf ~)`` stays a name. A value no quoting makes safe to show
(control characters, newlines, NUL, bidi and other invisible format characters) is written as a
neutral ``PLACEHOLDER_<n>`` and its text handed back to the caller to keep as data.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Sequence

__all__ = ["PLACEHOLDER", "format_command", "format_comment", "is_script_safe"]

#: Unicode categories no script line may carry, quoted or not: control characters (newline, NUL,
#: escape sequences), format characters (bidi overrides and isolates, zero-width marks), line and
#: paragraph separators and lone surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
PLACEHOLDER = "PLACEHOLDER_{}"


def is_script_safe(value: str) -> bool:
    """True when ``value``, once quoted, reads in a script and a terminal exactly as it runs."""
    return not any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in value)


def format_command(argv: Sequence[object], placeholders: dict[str, str] | None = None) -> str:
    """One shell line running ``argv``: every value quoted with :func:`shlex.quote`.

    A value that is not :func:`is_script_safe` is written as ``PLACEHOLDER_<n>`` and recorded in
    ``placeholders`` (``{placeholder: original}``; the same value keeps its placeholder), so the
    line never carries it. Every script or command line the tool writes or prints goes through here.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("format_command takes a list of arguments, not a command line")
    placeholders = {} if placeholders is None else placeholders
    words = []
    for value in argv:
        value = str(value)
        if not is_script_safe(value):
            known = next((name for name, original in placeholders.items() if original == value), None)
            if known is None:
                known = PLACEHOLDER.format(len(placeholders) + 1)
                placeholders[known] = value
            value = known
        words.append(shlex.quote(value))
    return " ".join(words)


def format_comment(text: str) -> str:
    """``# text`` on one line: characters a script line may not carry become ``?``."""
    return "# " + "".join("?" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in str(text))
