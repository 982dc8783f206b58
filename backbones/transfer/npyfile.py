"""A float16 ``.npy`` file written row block by row block with plain writes: flat memory, space reserved first.

    rows = RowWriter(path, n_max=10_000, dim=2048)   # header + posix_fallocate: a full disk fails here
    rows.append(block)                                # (B, 2048), in order
    rows.finish()                                     # the real row count written into the header
    np.load(path, mmap_mode="r")                     # an ordinary .npy

Memory-mapping the file while writing would count every written page in the process's RSS; sequential
writes leave them to the page cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backbones.errors import BackboneError

#: Bytes reserved for the ``.npy`` header, so the final shape can be written over the first one in place.
_HEADER_BYTES = 128


def _npy_header(shape: tuple[int, int]) -> bytes:
    """A version 1.0 ``.npy`` header for a C-ordered float16 array, padded to exactly ``_HEADER_BYTES``.

    Fixed length, so the row count can be rewritten in place once the unreadable images are known.
    """
    text = repr({"descr": np.dtype(np.float16).str, "fortran_order": False, "shape": tuple(shape)})
    body_len = _HEADER_BYTES - 10
    body = text.ljust(body_len - 1) + "\n"
    if len(body) != body_len:
        raise BackboneError(f"feature array shape {shape} is too large for the cache header")
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


class RowWriter:
    """Rows appended to ``<folder>/features.npy`` by plain writes; the space is reserved up front."""

    def __init__(self, path: Path, n_max: int, dim: int):
        self.path, self.n_max, self.dim, self.rows = path, n_max, dim, 0
        self.file = open(path, "wb")
        try:
            self.file.write(_npy_header((n_max, dim)))
            if hasattr(os, "posix_fallocate"):
                # A full disk fails here, with a clear message, not halfway or as a SIGBUS later.
                os.posix_fallocate(self.file.fileno(), 0, _HEADER_BYTES + n_max * dim * 2)
        except BaseException:
            self.file.close()
            raise

    def append(self, block: np.ndarray) -> None:
        if block.shape[1] != self.dim:
            raise BackboneError(f"the model gave {block.shape[1]} features for some images and {self.dim} for others")
        self.file.write(np.ascontiguousarray(block, dtype=np.float16).tobytes())
        self.rows += block.shape[0]

    def finish(self) -> None:
        self.file.truncate(_HEADER_BYTES + self.rows * self.dim * 2)
        self.file.seek(0)
        self.file.write(_npy_header((self.rows, self.dim)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
