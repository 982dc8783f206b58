"""The project's error types.

Every error a user can cause (a bad name, a bad file, missing weights) raises a
subclass of :class:`BackboneError`. The command lines print ``error: <message>``
and exit 2; the dashboard shows the message. Messages are one line.
"""

from __future__ import annotations


class BackboneError(Exception):
    """Base class of every error the user can cause."""

    def __str__(self) -> str:  # one line, whatever the cause said
        # Exception.__str__, not super(): KeyError subclasses would print their message in quotes.
        return " ".join(Exception.__str__(self).split())


class UnknownModelError(BackboneError, KeyError):
    """A model name that is not in the catalog."""


class WeightsUnavailableError(BackboneError):
    """Trained weights are needed but are not on this machine."""


class CheckpointError(BackboneError):
    """A checkpoint or weights file that cannot be used (corrupt, hostile, wrong architecture)."""


class ImageError(BackboneError):
    """An image that cannot be decoded or is refused (bomb, truncated, not an image)."""


class LayerError(BackboneError, KeyError):
    """A layer name that does not exist or does not fit the request."""


class DeviceError(BackboneError):
    """A device that is not available (cuda on a machine without a GPU)."""


class StoreError(BackboneError):
    """The results store cannot be read or written."""


class DatasetError(BackboneError):
    """A dataset that cannot be read."""


class LogFormatError(BackboneError):
    """A training log that cannot be parsed."""


class CancelledError(BackboneError):
    """Long work stopped because the caller asked it to."""


class DownloadError(WeightsUnavailableError):
    """Weights could not be downloaded (network, server, integrity or disk); nothing was left behind."""
