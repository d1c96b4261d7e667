"""desync: casync-compatible chunking, chunk stores and archives.

The library is usable on its own: :mod:`desync.index` reads and writes
index files, :mod:`desync.chunker` finds chunk boundaries, :mod:`desync.stores`
opens chunk stores, and :mod:`desync.ops` holds the operations the
command line offers (make, extract, verify, ...).
"""

from ._version import __version__

__all__ = ["__version__"]
