"""A lying SFTP v3 server for the tests, speaking on stdin/stdout as ``ssh HOST -s sftp`` would.

It serves the real files under their absolute paths (read-only: enough for
reading a store and an index) and tells the one lie that ``LYING_SFTP``
names:

- ``endless-file``: chunk files never end (every READ is answered in full);
- ``endless-frame``: chunk files never end and are a zstd frame of ever more blocks (:func:`endless_frame`);
- ``padded``: chunk files are their real content followed by 1 MiB of junk;
- ``endless-dir``: every directory listing goes on for ever;
- ``empty-replies``: every directory listing goes on for ever with replies that name nothing;
- ``escape-status``: opening a chunk file fails with a long STATUS message full of terminal escape sequences;
- ``stall``: reads of chunk files are never answered (everything else is).

Run by the ssh stand-in of :func:`hostile_peers.sftp_ssh`; the arguments ssh would get are ignored.
"""

import os
import struct
import sys

MODE = os.environ.get("LYING_SFTP", "")
PAD = 1 << 20
ENDLESS, STALLED = -1, -2  # virtual sizes of files that never end, or are never answered
ESCAPES = "\x1b]2;owned\x07\x1b[2J\x1b[31mred\nsecond line\r" + "y" * 20000

INIT, VERSION, OPEN, CLOSE, READ, LSTAT, OPENDIR, READDIR, STAT = 1, 2, 3, 4, 5, 7, 11, 12, 17
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_FAILURE, FX_OP_UNSUPPORTED = 0, 1, 2, 4, 8


# A zstd frame header (2 MiB window, no content size) and the raw block of 128 KiB of zeros it repeats for ever.
FRAME_HEAD = b"\x28\xb5\x2f\xfd\x00\x58"
FRAME_BLOCK = (128 << 10 << 3).to_bytes(3, "little") + bytes(128 << 10)


def endless_frame(offset: int, length: int) -> bytes:
    """Bytes ``offset`` to ``offset + length`` of a zstd frame that never ends: well formed as far as it goes,
    so only a bound on what is read or decoded stops a reader."""
    stream = FRAME_HEAD + FRAME_BLOCK * (length // len(FRAME_BLOCK) + 2)
    if offset < len(FRAME_HEAD):
        return stream[offset:offset + length]
    start = len(FRAME_HEAD) + (offset - len(FRAME_HEAD)) % len(FRAME_BLOCK)
    return stream[start:start + length]


def string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class Server:
    def __init__(self) -> None:
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer
        self.files: dict[bytes, tuple[bytes, int]] = {}  # handle -> (content, virtual size or ENDLESS/STALLED)
        self.dirs: dict[bytes, list[bytes] | None] = {}  # handle -> names left (None: endless)
        self.next_handle = 0
        self.junk = 0

    def send(self, ptype: int, body: bytes) -> None:
        self.out.write(struct.pack(">IB", len(body) + 1, ptype) + body)
        self.out.flush()

    def status(self, rid: int, code: int, message: str = "") -> None:
        self.send(STATUS, struct.pack(">II", rid, code) + string(message.encode()) + string(b""))

    def handle(self) -> bytes:
        self.next_handle += 1
        return str(self.next_handle).encode()

    def serve(self) -> None:
        while True:
            head = self.inp.read(4)
            if len(head) < 4:
                return
            body = self.inp.read(struct.unpack(">I", head)[0])
            ptype = body[0]
            if ptype == INIT:
                self.send(VERSION, struct.pack(">I", 3))
                continue
            rid = struct.unpack(">I", body[1:5])[0]
            self.answer(ptype, rid, body[5:])

    def answer(self, ptype: int, rid: int, payload: bytes) -> None:
        n = struct.unpack(">I", payload[:4])[0]
        arg = payload[4:4 + n]
        path = arg.decode("utf-8", "surrogateescape")
        if ptype in (STAT, LSTAT):
            try:
                st = os.stat(path)
            except OSError:
                self.status(rid, FX_NO_SUCH_FILE, "no such file")
                return
            self.send(ATTRS, struct.pack(">IIQI", rid, 0x5, st.st_size, st.st_mode))
        elif ptype == OPEN:
            chunk = path.endswith(".cacnk")
            if chunk and MODE == "escape-status":
                self.status(rid, FX_FAILURE, ESCAPES)
                return
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError:
                self.status(rid, FX_NO_SUCH_FILE, "no such file")
                return
            size = len(content)
            if chunk and MODE in ("endless-file", "endless-frame"):
                size = ENDLESS
            elif chunk and MODE == "stall":
                size = STALLED
            elif chunk and MODE == "padded":
                content += b"\x00junk" * (PAD // 5)
                size = len(content)
            h = self.handle()
            self.files[h] = (content, size)
            self.send(HANDLE, struct.pack(">I", rid) + string(h))
        elif ptype == READ:
            content, size = self.files[arg]
            offset, length = struct.unpack(">QI", payload[4 + n:16 + n])
            if size == STALLED:
                return
            if size < 0:
                data = endless_frame(offset, length) if MODE == "endless-frame" else b"\x5a" * length
                self.send(DATA, struct.pack(">I", rid) + string(data))
            elif offset >= size:
                self.status(rid, FX_EOF, "end of file")
            else:
                self.send(DATA, struct.pack(">I", rid) + string(content[offset:offset + length]))
        elif ptype == CLOSE:
            self.files.pop(arg, None)
            self.dirs.pop(arg, None)
            self.status(rid, FX_OK)
        elif ptype == OPENDIR:
            try:
                names = [os.fsencode(x) for x in os.listdir(path)]
            except OSError:
                self.status(rid, FX_NO_SUCH_FILE, "no such directory")
                return
            h = self.handle()
            self.dirs[h] = None if MODE in ("endless-dir", "empty-replies") else names
            self.send(HANDLE, struct.pack(">I", rid) + string(h))
        elif ptype == READDIR:
            left = self.dirs[arg]
            if left is None and MODE == "empty-replies":
                self.send(NAME, struct.pack(">II", rid, 0))
                return
            if left is None:
                batch = []
                for _ in range(1000):
                    self.junk += 1
                    batch.append(b"junk-%012d" % self.junk)
            else:
                batch, self.dirs[arg] = left[:100], left[100:]
            if not batch:
                self.status(rid, FX_EOF, "end of directory")
                return
            entries = b"".join(string(x) + string(x) + struct.pack(">I", 0) for x in batch)
            self.send(NAME, struct.pack(">II", rid, len(batch)) + entries)
        else:
            self.status(rid, FX_OP_UNSUPPORTED, "read-only")


if __name__ == "__main__":
    try:
        Server().serve()
    except BrokenPipeError:
        pass
