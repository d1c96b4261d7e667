"""The plain record classes keep a dataclass's value semantics: ``==`` field by field, and a readable repr."""

from hypothesis import given
from hypothesis import strategies as st

from desync.catar.acl import PosixAcl
from desync.catar.decoder import DirEnd
from desync.catar.extract import ExtractOptions
from desync.catar.model import Acl, AclDefault, AclEntry, Meta, UidShift
from desync.tempnames import _sha256_hex


def test_records_compare_by_value_and_by_class() -> None:
    a = Meta(0o100644, uid=1, xattrs=[(b"user.a", b"1")], acl=Acl(users=[AclEntry(5, 7, b"u")]))
    b = Meta(0o100644, uid=1, xattrs=[(b"user.a", b"1")], acl=Acl(users=[AclEntry(5, 7, b"u")]))
    assert a == b
    b.acl = Acl(users=[AclEntry(5, 6, b"u")])
    assert a != b
    assert Meta(0o40755) != DirEnd((), Meta(0o40755), 0)
    assert DirEnd((b"x",), Meta(0o40755), 3) == DirEnd((b"x",), Meta(0o40755), 3)
    assert AclDefault(1, 2, 3, 4) != AclDefault(1, 2, 3, 5)
    assert PosixAcl(user_obj=6) == PosixAcl(user_obj=6) != PosixAcl()
    assert ExtractOptions() == ExtractOptions() != ExtractOptions(delete=True)


def test_defaults_are_fresh_per_record() -> None:
    a, b = Meta(0o100644), Meta(0o100644)
    a.xattrs.append((b"user.x", b""))
    assert b.xattrs == []
    assert Acl().users is not Acl().users


def test_repr_names_the_class_and_every_field() -> None:
    assert repr(AclEntry(1, 4)) == "AclEntry(ident=1, permissions=4, name=None)"
    assert repr(UidShift(7)) == "UidShift(shift=7, range=65536)"
    text = repr(Meta(0o100600, size=3))
    assert text.startswith("Meta(mode=33152, uid=0, gid=0,") and "size=3" in text and text.endswith("projid=0)")


def test_uid_shift_is_hashable_by_value() -> None:
    assert {UidShift(1, 10), UidShift(1, 10)} == {UidShift(1, 10)}
    assert hash(UidShift(0, 0)) == hash(UidShift(0, 0))


@given(st.binary(max_size=200))
def test_owner_tags_hash_as_hashlib_does(data: bytes) -> None:
    """Tags name their host by SHA-256 from the interpreter's own module; a tag must not change with it."""
    import hashlib

    assert _sha256_hex(data) == hashlib.sha256(data).hexdigest()
