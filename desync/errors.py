"""The exceptions desync raises; the CLI turns each into one error line.

Everything a user can cause (bad input, missing chunks, unreachable stores)
is a :class:`DesyncError`; anything else is a bug and shows a traceback
only with ``--verbose``.  The library raises the classes below and never
:class:`UsageError`, which belongs to the command line; ``desync/cli/main.py``
maps each class to an exit status (docs/design.md 3.3)::

    DesyncError
    +-- UsageError          the command line is wrong (exit status 2)
    +-- InvalidArgument     a value given to the library is not valid (exit status 2)
    +-- FormatError         bytes do not follow the format, at a byte offset where known
    |   +-- CompressionError  stored bytes do not decode
    +-- StoreError          a store cannot be read or written
    |   +-- ChunkMissing    a miss, not a failure: the next store is asked
    |   +-- ChunkInvalid    a stored chunk does not match its ID or does not decode
    |   +-- NetworkError    a peer cannot be reached or broke off
    +-- IntegrityError      content does not match the ID or index that names it
    +-- Interrupted         Ctrl-C or a stop signal
"""


class DesyncError(Exception):
    """Base class of all expected failures."""


class UsageError(DesyncError):
    """Wrong command-line usage (exit status 2); raised in ``desync/cli/`` only."""


class InvalidArgument(DesyncError):
    """A value handed to the library is not valid: a store location, digest name, chunk sizes, a feature.

    Such values come from the command line, so the CLI reports them like a
    usage error (exit status 2); the library knows nothing of options.
    """


class FormatError(DesyncError):
    """A file or message does not follow its format (damaged or truncated).

    ``offset`` is the byte offset of the problem when the parser knows it;
    the message then ends in "at offset N".
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} at offset {offset}")
        self.message = message
        self.offset = offset


class CompressionError(FormatError):
    """The bytes are not one valid compressed stream (or decompress to more than allowed)."""


class StoreError(DesyncError):
    """A store cannot be read or written."""


class ChunkMissing(StoreError):
    """The chunk is not in the store (a miss, not a failure)."""

    def __init__(self, chunk_id: bytes, store: str) -> None:
        super().__init__(f"chunk {chunk_id.hex()} missing from store {store}")
        self.chunk_id = chunk_id
        self.store = store


class IndexMissing(StoreError):
    """The index is not in its index store (an index server answers 404 for it)."""

    def __init__(self, location: str) -> None:
        super().__init__(f"index {location} not found")
        self.location = location


class ChunkInvalid(StoreError):
    """The chunk's content does not match its ID, or does not decompress."""

    def __init__(self, chunk_id: bytes, store: str, reason: str) -> None:
        where = f" in store {store}" if store else ""
        super().__init__(f"chunk {chunk_id.hex()}{where} is invalid: {reason}")
        self.chunk_id = chunk_id
        self.store = store
        self.reason = reason


class NetworkError(StoreError):
    """A peer (HTTP server, S3 endpoint, SSH host) cannot be reached, or broke off the exchange.

    A store error, so routers and failover groups treat it like any other
    failing store.
    """


class IntegrityError(DesyncError):
    """Content does not match what names it: a file against its index, a chunk against its ID."""


class Interrupted(DesyncError):
    """The user pressed Ctrl-C; temp files were removed."""
