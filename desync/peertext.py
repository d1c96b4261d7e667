"""Text that came from a peer (an HTTP body, an SFTP status, a remote's stderr) made safe for one error line.

Peers are not trusted: their words reach the user's terminal only
shortened, on one line, with control characters (escape sequences
included) shown as escapes instead of being interpreted.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final


PEER_TEXT_LIMIT: Final = 300


def peer_text(text: str | bytes, limit: int = PEER_TEXT_LIMIT) -> str:
    """``text`` on one line of at most about ``limit`` characters, control characters escaped."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", errors="replace")
    out: list[str] = []
    length = 0
    for ch in text.strip():
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0:
            piece = "\\n" if ch == "\n" else "\\t" if ch == "\t" else f"\\x{code:02x}"
        else:
            piece = ch
        if length + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)
