"""The two callbacks every long-running function takes, named once for the whole code base.

``progress(done, total, message)`` is called as work advances; ``should_stop()`` is polled between steps and,
when it returns true, the function raises :class:`backbones.errors.CancelledError` keeping nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]
#: ``progress(done, total)`` in bytes, per chunk of a download; ``total`` is None when the server does not say.
ByteProgressFn = Callable[[int, "int | None"], None]
