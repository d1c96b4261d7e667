"""The exceptions desync raises; the CLI turns each into one error line.

Everything a user can cause (bad input, missing chunks, unreachable stores)
is a :class:`DesyncError`; anything else is a bug and shows a traceback
only with ``--verbose``.
"""


class DesyncError(Exception):
    """Base class of all expected failures."""


class UsageError(DesyncError):
    """Wrong command-line usage (exit status 2)."""


class FormatError(DesyncError):
    """A file does not follow the casync format (damaged or truncated)."""


class StoreError(DesyncError):
    """A store cannot be read or written."""


class ChunkMissing(StoreError):
    """The chunk is not in the store (a miss, not a failure)."""

    def __init__(self, chunk_id: bytes, store: str) -> None:
        super().__init__(f"chunk {chunk_id.hex()} missing from store {store}")
        self.chunk_id = chunk_id
        self.store = store


class ChunkInvalid(StoreError):
    """The chunk's content does not match its ID, or does not decompress."""

    def __init__(self, chunk_id: bytes, store: str, reason: str) -> None:
        where = f" in store {store}" if store else ""
        super().__init__(f"chunk {chunk_id.hex()}{where} is invalid: {reason}")
        self.chunk_id = chunk_id
        self.store = store
        self.reason = reason


class Interrupted(DesyncError):
    """The user pressed Ctrl-C; temp files were removed."""

