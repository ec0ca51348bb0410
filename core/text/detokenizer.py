"""Token ids to text, one token at a time, never splitting a UTF-8 character."""

from __future__ import annotations

import codecs
from collections.abc import Callable


class IncrementalDetokenizer:
    """Feeds token pieces (raw bytes) through an incremental UTF-8 decoder.

    A multi-byte character split over two tokens comes out whole with the second token.
    """

    def __init__(self, token_bytes: Callable[[int], bytes]) -> None:
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._decoder.decode(self._token_bytes(token))

    def flush(self) -> str:
        """Whatever is left at the end; an unfinished character becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)
