"""The catar archive format: encode trees, decode, extract, list, convert tar.

Library API (each module's docstring has the details):

* ``encode_tree(path, flags, options) -> Iterator[bytes]`` (encoder):
  a directory as casync would archive it, byte for byte, streamed.
* ``decode(source) -> Iterator[Node | DirEnd]`` (decoder): strict
  streaming reader; ``IterableReader`` adapts an iterator of bytes.
* ``extract_stream(source, target, options)`` / ``extract_events``
  (extract): safe extraction into a directory.
* ``mtree_lines(events)``, ``list_lines(events)``,
  ``directory_events(path, flags)`` (mtree): ``casync mtree``/``list``.
* ``tar_to_catar(fileobj, flags)``, ``catar_to_tar(events, out, fmt)``
  (tarconv).
* ``resolve_flags(with_names, without_names, ...)`` (format): casync's
  ``--with``/``--without`` rules.
"""

from .decoder import DirEnd, IterableReader, Node, Payload, decode
from .encoder import EncodeOptions, encode_tree
from .extract import ExtractOptions, extract_events, extract_stream
from .format import resolve_flags
from .model import Acl, AclDefault, AclEntry, Meta
from .mtree import directory_events, list_lines, mtree_lines
from .tarconv import catar_to_tar, tar_to_catar

__all__ = [
    "Acl",
    "AclDefault",
    "AclEntry",
    "DirEnd",
    "EncodeOptions",
    "ExtractOptions",
    "IterableReader",
    "Meta",
    "Node",
    "Payload",
    "catar_to_tar",
    "decode",
    "directory_events",
    "encode_tree",
    "extract_events",
    "extract_stream",
    "list_lines",
    "mtree_lines",
    "resolve_flags",
    "tar_to_catar",
]
