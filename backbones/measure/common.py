"""What every measurement shares: the lock, argument checks, the device, and the model and input to run.

Latency, size and compute each take a model in the same forms (an ``nn.Module`` or a
LoadedModel carrying its own lock) and an input size ``C H W``; these helpers turn
those arguments into the module to run, a copy of it on the measured device and a
fixed example input, so the three measurements agree on what they measured.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import threading
import time

import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn  # noqa: F401  (re-exported by backbones.measure)
from backbones.errors import BackboneError, CancelledError

# resolve_device is re-exported: measurements and benchmarks import it from here.
from backbones.inference.device import model_device, resolve_device  # noqa: F401

#: Devices a measurement can time: mps queues work without the synchronisation :func:`sync` waits for.
MEASURED_DEVICE_TYPES = ("cpu", "cuda")


class FairLock:
    """A re-entrant lock granted in arrival order.

    Several dashboard sessions measure on one machine; with a plain lock whichever thread the OS wakes
    first wins, so one session's sweep of many models can starve everyone else. Sweeps take this lock per
    model, and waiting threads get it first come, first served, so sessions take turns model by model.
    :meth:`turn` waits the same way but gives its place up when the visitor has gone.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._count = 0
        self._queue: collections.deque[object] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not blocking:
            with self._cond:
                return self._take_if_free(threading.get_ident())
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        return self._wait_turn(deadline, None)

    def acquire_unless(self, should_stop: StopFn | None, *, poll_s: float = 0.1) -> bool:
        """Wait for this thread's turn in arrival order like :meth:`acquire`, but give the place up and return
        False as soon as ``should_stop()`` is true (polled every ``poll_s`` while waiting)."""
        return self._wait_turn(None, should_stop, poll_s)

    @contextlib.contextmanager
    def turn(self, should_stop: StopFn | None = None, *, what: str = "work"):
        """Hold the lock for one unit of work once it is this thread's turn; :class:`CancelledError` when
        ``should_stop()`` turns true first (the visitor left while waiting)."""
        if not self.acquire_unless(should_stop):
            raise CancelledError(f"{what} cancelled")
        try:
            yield self
        finally:
            self.release()

    def _take_if_free(self, me: int) -> bool:
        if self._owner == me:
            self._count += 1
            return True
        if self._owner is None and not self._queue:
            self._owner, self._count = me, 1
            return True
        return False

    def _wait_turn(self, deadline: float | None, should_stop: StopFn | None, poll_s: float = 0.1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if stop_requested(should_stop):
                return False
            if self._take_if_free(me):
                return True
            ticket = object()
            self._queue.append(ticket)
            try:
                while not (self._owner is None and self._queue[0] is ticket):
                    if stop_requested(should_stop):
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if should_stop is not None:
                        remaining = poll_s if remaining is None else min(remaining, poll_s)
                    self._cond.wait(remaining)
                self._owner, self._count = me, 1
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock not held by this thread")
            self._count -= 1
            if self._count == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


#: Held for the whole of every measurement of one model (re-entrant; fair across threads). It is also the one
#: queue of every other long per-visitor computation (Explain's method ranking and sanity check, unit by unit):
#: on a shared server they take turns instead of running side by side, and never beside a timing.
MEASUREMENT_LOCK = FairLock()
WORK_QUEUE = MEASUREMENT_LOCK



def check_positive(name: str, value, *, allow_none: bool = False) -> None:
    """:class:`BackboneError` unless ``value`` is an integer >= 1 (or None where that is allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackboneError(f"{name} must be a positive integer, got {value!r}")


def check_input_size(input_size) -> tuple[int, int, int]:
    """``(C, H, W)`` as three positive integers, else :class:`BackboneError`."""
    try:
        size = tuple(int(x) for x in input_size)
    except (TypeError, ValueError) as exc:
        raise BackboneError(f"input size must be three integers C H W, got {input_size!r}") from exc
    if len(size) != 3 or min(size) < 1:
        raise BackboneError(f"input size must be three positive integers C H W, got {input_size!r}")
    return size  # type: ignore[return-value]


def stop_requested(should_stop: StopFn | None) -> bool:
    return bool(should_stop is not None and should_stop())


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Set ``torch.set_num_threads`` inside the block and restore the previous value afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def unwrap_model(model) -> tuple[nn.Module, contextlib.AbstractContextManager]:
    """The module to run and the lock guarding it (a LoadedModel carries one; CAM hooks use it)."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(model, nn.Module):
        return inner, getattr(model, "lock", None) or contextlib.nullcontext()
    if not isinstance(model, nn.Module):
        raise BackboneError(f"cannot measure a {type(model).__name__}: expected a torch module or a loaded model")
    return model, contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """The model on ``device`` in the requested memory format, copied so the caller's model is untouched."""
    current = model_device(model)
    if current.type == "meta":
        raise BackboneError("this model has no real weights (meta device); build it with build_architecture")
    if current == device and not channels_last:
        return model
    clone = copy.deepcopy(model).to(device)
    return clone.to(memory_format=torch.channels_last) if channels_last else clone


def example_input(batch_size: int, input_size, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A ``(batch_size, C, H, W)`` input, the same every time (some ops are data dependent)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_size, generator=gen).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer or memory counter sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
