"""casync's content-defined chunker (docs/formats.md 6), byte-exact.

Chunk boundaries decide chunk IDs, so anything but casync's exact algorithm
(including its quirks: the first boundary test at exactly ``min`` bytes,
the discriminator clamp, fixed-size mode) would defeat deduplication
against casync and Go desync stores.  The C accelerator does the scanning
when it is available; the pure-Python code below is its reference twin and
must give identical results.
"""

import mmap
from typing import Final, Union

from ._accel import chunker_module
from .constants import CHUNK_SIZE_LIMIT, CHUNKER_WINDOW_SIZE
from .errors import InvalidArgument
from .parallel import Workers, map_on, ordered_map

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._accel import ChunkerModule

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]

ACCELERATED: Final = chunker_module is not None

_MASK32: Final = 0xFFFFFFFF

# casync's buzhash table (docs/formats.md 6.2).
_TABLE: Final[list[int]] = [
    0x458BE752, 0xC10748CC, 0xFBBCDBB8, 0x6DED5B68,
    0xB10A82B5, 0x20D75648, 0xDFC5665F, 0xA8428801,
    0x7EBF5191, 0x841135C7, 0x65CC53B3, 0x280A597C,
    0x16F60255, 0xC78CBC3E, 0x294415F5, 0xB938D494,
    0xEC85C4E6, 0xB7D33EDC, 0xE549B544, 0xFDEDA5AA,
    0x882BF287, 0x3116737C, 0x05569956, 0xE8CC1F68,
    0x0806AC5E, 0x22A14443, 0x15297E10, 0x50D090E7,
    0x4BA60F6F, 0xEFD9F1A7, 0x5C5C885C, 0x82482F93,
    0x9BFD7C64, 0x0B3E7276, 0xF2688E77, 0x8FAD8ABC,
    0xB0509568, 0xF1ADA29F, 0xA53EFDFE, 0xCB2B1D00,
    0xF2A9E986, 0x6463432B, 0x95094051, 0x5A223AD2,
    0x9BE8401B, 0x61E579CB, 0x1A556A14, 0x5840FDC2,
    0x9261DDF6, 0xCDE002BB, 0x52432BB0, 0xBF17373E,
    0x7B7C222F, 0x2955ED16, 0x9F10CA59, 0xE840C4C9,
    0xCCABD806, 0x14543F34, 0x1462417A, 0x0D4A1F9C,
    0x087ED925, 0xD7F8F24C, 0x7338C425, 0xCF86C8F5,
    0xB19165CD, 0x9891C393, 0x325384AC, 0x0308459D,
    0x86141D7E, 0xC922116A, 0xE2FFA6B6, 0x53F52AED,
    0x2CD86197, 0xF5B9F498, 0xBF319C8F, 0xE0411FAE,
    0x977EB18C, 0xD8770976, 0x9833466A, 0xC674DF7F,
    0x8C297D45, 0x8CA48D26, 0xC49ED8E2, 0x7344F874,
    0x556F79C7, 0x6B25EAED, 0xA03E2B42, 0xF68F66A4,
    0x8E8B09A2, 0xF2E0E62A, 0x0D3A9806, 0x9729E493,
    0x8C72B0FC, 0x160B94F6, 0x450E4D3D, 0x7A320E85,
    0xBEF8F0E1, 0x21D73653, 0x4E3D977A, 0x1E7B3929,
    0x1CC6C719, 0xBE478D53, 0x8D752809, 0xE6D8C2C6,
    0x275F0892, 0xC8ACC273, 0x4CC21580, 0xECC4A617,
    0xF5F7BE70, 0xE795248A, 0x375A2FE9, 0x425570B6,
    0x8898DCF8, 0xDC2D97C4, 0x0106114B, 0x364DC22F,
    0x1E0CAD1F, 0xBE63803C, 0x5F69FAC2, 0x4D5AFA6F,
    0x1BC0DFB5, 0xFB273589, 0x0EA47F7B, 0x3C1C2B50,
    0x21B2A932, 0x6B1223FD, 0x2FE706A8, 0xF9BD6CE2,
    0xA268E64E, 0xE987F486, 0x3EACF563, 0x1CA2018C,
    0x65E18228, 0x2207360A, 0x57CF1715, 0x34C37D2B,
    0x1F8F3CDE, 0x93B657CF, 0x31A019FD, 0xE69EB729,
    0x8BCA7B9B, 0x4C9D5BED, 0x277EBEAF, 0xE0D8F8AE,
    0xD150821C, 0x31381871, 0xAFC3F1B0, 0x927DB328,
    0xE95EFFAC, 0x305A47BD, 0x426BA35B, 0x1233AF3F,
    0x686A5B83, 0x50E072E5, 0xD9D3BB2A, 0x8BEFC475,
    0x487F0DE6, 0xC88DFF89, 0xBD664D5E, 0x971B5D18,
    0x63B14847, 0xD7D3C1CE, 0x7F583CF3, 0x72CBCB09,
    0xC0D0A81C, 0x7FA3429B, 0xE9158A1B, 0x225EA19A,
    0xD8CA9EA3, 0xC763B282, 0xBB0C6341, 0x020B8293,
    0xD4CD299D, 0x58CFA7F8, 0x91B4EE53, 0x37E4D140,
    0x95EC764C, 0x30F76B06, 0x5EE68D24, 0x679C8661,
    0xA41979C2, 0xF2B61284, 0x4FAC1475, 0x0ADB49F9,
    0x19727A23, 0x15A7E374, 0xC43A18D5, 0x3FB1AA73,
    0x342FC615, 0x924C0793, 0xBEE2D7F0, 0x8A279DE9,
    0x4AA2D70C, 0xE24DD37F, 0xBE862C0B, 0x177C22C2,
    0x5388E5EE, 0xCD8A7510, 0xF901B4FD, 0xDBC13DBC,
    0x6C0BAE5B, 0x64EFE8C7, 0x48B02079, 0x80331A49,
    0xCA3D8AE6, 0xF3546190, 0xFED7108B, 0xC49B941B,
    0x32BAF4A9, 0xEB833A4A, 0x88A3F1A5, 0x3A91CE0A,
    0x3CC27DA1, 0x7112E684, 0x4A3096B1, 0x3794574C,
    0xA3C8B6F3, 0x1D213941, 0x6E0A2E00, 0x233479F1,
    0x0F4CD82F, 0x6093EDD2, 0x5D7D209E, 0x464FE319,
    0xD4DCAC9E, 0x0DB845CB, 0xFB5E4BC3, 0xE0256CE1,
    0x09FB4ED1, 0x0914BE1E, 0xA5BDB2C3, 0xC6EB57BB,
    0x30320350, 0x3F397E91, 0xA67791BC, 0x86BC0E2C,
    0xEFA0A7E2, 0xE9FF7543, 0xE733612C, 0xD185897B,
    0x329E5388, 0x91DD236B, 0x2ECB0D93, 0xF4D82A3D,
    0x35B5C03F, 0xE4E606F0, 0x05B21843, 0x37B45964,
    0x5EFF22F4, 0x6027F4CC, 0x77178B3C, 0xAE507131,
    0x7BF7CABC, 0xF9C18D66, 0x593ADE65, 0xD95DDF11,
]

# The table rotated left by 48 % 32 = 16: the contribution of the byte that
# leaves the window, so the rolling step needs no extra rotation.
_TABLE_OUT: Final[list[int]] = [((v << 16) & _MASK32) | (v >> 16) for v in _TABLE]

# Hash of 48 zero bytes; zero runs are skipped without hashing when it is
# not a boundary.
_ZERO_WINDOW_HASH: Final = 0x9E489E48
_ZERO_PIECE: Final = bytes(64 * 1024)

# parallel_boundaries() gives each worker at least this many max-size
# chunks of data, so resynchronising (about one chunk) stays cheap.
_PARALLEL_MIN_SECTION_CHUNKS: Final = 4


def discriminator(min_size: int, avg_size: int, max_size: int) -> int:
    """casync's discriminator for ``avg_size``, clamped to [min, max] as casync does.

    casync converts the double quotient to size_t: a negative quotient
    (avg beyond ~9.3 MB, where the denominator turns negative) wraps to a
    huge value and so clamps to ``max_size``, not to ``min_size``.
    """
    avg = float(avg_size)
    quotient = avg / (-1.42888852e-7 * avg + 1.33237515)
    if quotient < 0 or quotient >= float(max_size):
        return max_size
    return max(int(quotient), min_size)


def window_hash(window: bytes) -> int:
    """Buzhash of one 48-byte window (oldest byte first)."""
    if len(window) != CHUNKER_WINDOW_SIZE:
        raise ValueError(f"window must be {CHUNKER_WINDOW_SIZE} bytes, got {len(window)}")
    table = _TABLE
    h = 0
    for b in window:
        h = (((h << 1) & _MASK32) | (h >> 31)) ^ table[b]
    return h


def validate_chunk_sizes(min_size: int, avg_size: int, max_size: int) -> None:
    """Reject sizes casync would refuse or could not chunk with.

    ``max_size < 48`` makes casync emit over-long chunks and fail, except
    in fixed-size mode, which never hashes.
    """
    if not 1 <= min_size <= avg_size <= max_size <= CHUNK_SIZE_LIMIT:
        raise InvalidArgument(
            f"invalid chunk sizes {min_size}:{avg_size}:{max_size}: "
            f"need 1 <= min <= avg <= max <= {CHUNK_SIZE_LIMIT} bytes"
        )
    fixed = min_size == avg_size == max_size
    if not fixed and max_size < CHUNKER_WINDOW_SIZE:
        raise InvalidArgument(
            f"invalid chunk sizes {min_size}:{avg_size}:{max_size}: the maximum chunk "
            f"size must be at least {CHUNKER_WINDOW_SIZE} bytes (the hash window) "
            "unless min, avg and max are equal"
        )


def parse_chunk_sizes(spec: str) -> tuple[int, int, int]:
    """Parse Go desync's ``-m MIN:AVG:MAX`` (KiB) into byte sizes."""
    parts = spec.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise InvalidArgument(
            f"invalid chunk size {spec!r}: expected MIN:AVG:MAX in KiB, e.g. 16:64:256"
        )
    min_kib, avg_kib, max_kib = (int(p) for p in parts)
    if min_kib == 0 or avg_kib == 0 or max_kib == 0:
        raise InvalidArgument(f"invalid chunk size {spec!r}: sizes must be at least 1 KiB")
    sizes = (min_kib * 1024, avg_kib * 1024, max_kib * 1024)
    validate_chunk_sizes(*sizes)
    return sizes


def _buffer_len(buf: Buffer) -> int:
    if isinstance(buf, memoryview):
        return buf.nbytes
    return len(buf)


def _byte_view(buf: Buffer) -> memoryview:
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _fixed_boundaries(start: int, end: int, final: bool, size: int) -> list[int]:
    out = list(range(start + size, end + 1, size))
    last = out[-1] if out else start
    if final and last < end:
        out.append(end)
    return out


def _scan_py(
    view: memoryview,
    start: int,
    end: int,
    final: bool,
    min_size: int,
    max_size: int,
    disc: int,
) -> list[int]:
    """Pure-Python twin of the C scan (docs/formats.md 6.4, minus fixed-size mode)."""
    table = _TABLE
    table_out = _TABLE_OUT
    mask = _MASK32
    target = disc - 1
    prime = max(min_size, CHUNKER_WINDOW_SIZE)
    out: list[int] = []
    s = start
    while s < end:
        remaining = end - s
        if remaining < prime:
            if final:
                out.append(end)
            break
        limit = min(remaining, max_size)
        # Only the last 48 bytes before ``prime`` and the bytes after it are
        # ever hashed; copy just those.
        seg = bytes(view[s + prime - CHUNKER_WINDOW_SIZE : s + limit])
        h = 0
        for b in seg[:CHUNKER_WINDOW_SIZE]:
            h = (((h << 1) & mask) | (h >> 31)) ^ table[b]
        cut = 0
        if h % disc == target:
            cut = prime
        else:
            length = prime
            for old, new in zip(seg, seg[CHUNKER_WINDOW_SIZE:]):
                h = (((h << 1) & mask) | (h >> 31)) ^ table_out[old] ^ table[new]
                length += 1
                if h % disc == target:
                    cut = length
                    break
            if not cut:
                if limit < max_size:
                    if final:
                        out.append(end)
                    break
                cut = max_size
        s += cut
        out.append(s)
    return out


def _is_zero(view: memoryview, start: int, end: int) -> bool:
    if view[start] or view[end - 1]:
        return False
    piece = len(_ZERO_PIECE)
    for pos in range(start, end, piece):
        stop = min(pos + piece, end)
        if bytes(view[pos:stop]) != _ZERO_PIECE[: stop - pos]:
            return False
    return True


class Chunker:
    """Finds casync chunk boundaries for one min/avg/max setting.

    Stateless between calls: casync resets its hash at every cut, so the
    caller only has to keep the bytes after the last returned boundary.
    """

    def __init__(self, min_size: int, avg_size: int, max_size: int, *, pure: bool = False) -> None:
        """``pure=True`` ignores the C accelerator (tests and benchmarks)."""
        validate_chunk_sizes(min_size, avg_size, max_size)
        self.min_size = min_size
        self.avg_size = avg_size
        self.max_size = max_size
        self.discriminator = discriminator(min_size, avg_size, max_size)
        self._fixed = min_size == max_size
        self._accel: ChunkerModule | None = None if pure else chunker_module
        self._zero_cuts = _ZERO_WINDOW_HASH % self.discriminator == self.discriminator - 1

    @property
    def accelerated(self) -> bool:
        """Whether this instance scans with the C accelerator."""
        return self._accel is not None

    def __repr__(self) -> str:
        return f"Chunker({self.min_size}, {self.avg_size}, {self.max_size})"

    def boundaries(self, buf: Buffer, start: int, end: int, final: bool) -> list[int]:
        """End offsets (in ``buf`` coordinates) of the complete chunks of ``buf[start:end]``.

        ``start`` must be a true chunk boundary.  Unless ``final``, a
        trailing partial chunk is left out: the caller appends more data to
        ``buf[last_end:end]`` and calls again.  With ``final`` the rest is
        the last chunk, so the result then ends with ``end``.
        """
        _check_range(buf, start, end)
        if start == end:
            return []
        if self._fixed:
            return _fixed_boundaries(start, end, final, self.min_size)
        accel = self._accel
        if accel is not None:
            result: list[int] = accel.boundaries(
                buf, start, end, final, self.min_size, self.max_size, self.discriminator
            )
            return result
        with _byte_view(buf) as view:
            return _scan_py(
                view, start, end, final, self.min_size, self.max_size, self.discriminator
            )

    def parallel_boundaries(
        self, buf: Buffer, start: int, end: int, final: bool, workers: int, pool: Workers | None = None
    ) -> list[int]:
        """The result of :meth:`boundaries`, computed by up to ``workers`` threads.

        Worker ``i`` chunks its own section as if a chunk started at its
        split point.  The sections are then joined (docs/formats.md 6.8): the
        verified chain of boundaries is extended serially until it reaches
        a chunk start of the next worker, and from that common boundary on
        the worker's boundaries are the true ones.  A worker that never
        meets the chain is ignored and its section chunked serially.
        ``pool`` (of ``workers`` threads) runs the sections; without one,
        threads are started for this call (a caller chunking segment after
        segment keeps a pool: starting threads holds the GIL).
        """
        _check_range(buf, start, end)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        count = min(workers, (end - start) // (_PARALLEL_MIN_SECTION_CHUNKS * self.max_size))
        if self._fixed or count < 2:
            return self.boundaries(buf, start, end, final)
        # Splits at multiples of max from start: in boundary-free data
        # (zeros) every worker then lands on the true max-size grid.
        span = (end - start) // count // self.max_size * self.max_size
        splits = [start + i * span for i in range(count)]
        splits.append(end)
        def section(i: int) -> list[int]:
            return self.boundaries(buf, splits[i], splits[i + 1], final and i == count - 1)

        if pool is not None:
            sections = map_on(pool, section, range(count))
        else:
            sections = list(ordered_map(section, range(count), count))
        with _byte_view(buf) as view:
            return self._join(buf, view, end, final, splits, sections)

    def _join(
        self,
        buf: Buffer,
        view: memoryview,
        end: int,
        final: bool,
        splits: list[int],
        sections: list[list[int]],
    ) -> list[int]:
        out = sections[0]
        cur = out[-1] if out else splits[0]
        pending: list[int] = []
        taken = 0
        for i in range(1, len(sections)):
            ends = sections[i]
            starts = [splits[i], *ends]
            j = 0
            while True:
                while j < len(starts) and starts[j] < cur:
                    j += 1
                if j == len(starts):
                    break
                if starts[j] == cur:
                    if j < len(ends):
                        out.extend(ends[j:])
                        cur = out[-1]
                    pending = []
                    taken = 0
                    break
                if taken == len(pending):
                    pending = self._next_boundaries(buf, view, cur, end, final)
                    taken = 0
                    if not pending:
                        return out
                cur = pending[taken]
                taken += 1
                out.append(cur)
        out.extend(self.boundaries(buf, cur, end, final))
        return out

    def _next_boundaries(
        self, buf: Buffer, view: memoryview, cur: int, end: int, final: bool
    ) -> list[int]:
        """A few true boundaries after the true boundary ``cur`` (none only at the end)."""
        top = cur + self.max_size
        if not self._zero_cuts and top <= end and _is_zero(view, cur, top):
            return [top]
        stop = min(end, cur + 2 * self.max_size)
        return self.boundaries(buf, cur, stop, final and stop == end)


def _check_range(buf: Buffer, start: int, end: int) -> None:
    size = _buffer_len(buf)
    if not 0 <= start <= end <= size:
        raise ValueError(f"need 0 <= start <= end <= len(buf), got {start}, {end}, {size}")
