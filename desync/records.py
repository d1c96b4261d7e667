"""Value semantics for the plain record classes that stand in for dataclasses.

Modules every archive command loads keep their records as plain classes:
importing the dataclass machinery and building each class costs more
start-up time than a small job spends on its work, and mypyc compiles a
plain ``__init__`` natively.  Such a class lists its fields in ``FIELDS``
and gets ``==`` and ``repr`` from here, as a dataclass would give them.
"""

from __future__ import annotations

from typing import ClassVar


class Record:
    """Compared field by field with records of the same class; shown as ``Name(field=value, ...)``."""

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({inner})"
