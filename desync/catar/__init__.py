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

The names are loaded from their submodules on first use (PEP 562), so a
command that only extracts does not load the encoder, the tar converter or
the listing code.  The module is left to the interpreter (setup.py
``NOT_COMPILED``): mypyc cannot compile a module-level ``__getattr__``.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only; the names below are loaded on first use (see __getattr__)
    from typing import Final

    from .decoder import DirEnd, IterableReader, Node, Payload, decode
    from .encoder import EncodeOptions, encode_tree
    from .extract import ExtractOptions, extract_events, extract_stream
    from .format import resolve_flags
    from .model import Acl, AclDefault, AclEntry, Meta
    from .mtree import directory_events, list_lines, mtree_lines
    from .tarconv import catar_to_tar, tar_to_catar

# Name -> the submodule that defines it.
_LAZY: Final = {
    "DirEnd": "decoder", "IterableReader": "decoder", "Node": "decoder", "Payload": "decoder", "decode": "decoder",
    "EncodeOptions": "encoder", "encode_tree": "encoder",
    "ExtractOptions": "extract", "extract_events": "extract", "extract_stream": "extract",
    "resolve_flags": "format",
    "Acl": "model", "AclDefault": "model", "AclEntry": "model", "Meta": "model",
    "directory_events": "mtree", "list_lines": "mtree", "mtree_lines": "mtree",
    "catar_to_tar": "tarconv", "tar_to_catar": "tarconv",
}

__all__ = ["Acl", "AclDefault", "AclEntry", "DirEnd", "EncodeOptions", "ExtractOptions", "IterableReader", "Meta",
           "Node", "Payload", "catar_to_tar", "decode", "directory_events", "encode_tree", "extract_events",
           "extract_stream", "list_lines", "mtree_lines", "resolve_flags", "tar_to_catar"]


def __getattr__(name: str) -> object:
    submodule = _LAZY.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
