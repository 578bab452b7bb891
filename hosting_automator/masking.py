"""The secrets a run must never show, and the masking every way out (log, stdout, exception, row) applies. The
bottom layer: it imports nothing of the project, so an exception or a client may mask without reaching upward."""

import collections
import threading
from typing import TypeVar
from urllib.parse import quote, quote_plus

MASK = "***"
PIECE = 8  # characters in a row of a secret that count as the secret
# Passwords a run keeps masked: every one of any run of up to this many sites (a run takes 20 by default), the
# latest ones of a longer run, so that masking costs the same at the 10,000th site as at the first.
GENERATED_KEPT = 1000

_T = TypeVar("_T")


class SecretValues:
    """Every value that must never be shown: configured keys and tokens, and the passwords the run generated
    (see `add_generated`), for the whole run.

    Any PIECE characters in a row of a value count as the value itself, so a secret that a service echoed cut
    short, or that an excerpt cut in half, is masked too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = collections.Counter()  # variant -> how many secrets hold it
        self._pieces = collections.Counter()  # every PIECE characters in a row of a variant
        self._variants = ()  # longest first, so a secret is masked whole before any shorter one inside it
        self._generated = collections.deque()

    @staticmethod
    def _forms(value):
        return {value, quote(value, safe=""), quote_plus(value)}

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4:  # masking very short strings would garble ordinary text
            return
        with self._lock:
            for variant in self._forms(value):
                self._held[variant] += 1
                self._pieces.update({variant[start:start + PIECE] for start in range(len(variant) - PIECE + 1)})
            self._variants = tuple(sorted(self._held, key=len, reverse=True))

    def discard(self, value: str) -> None:
        with self._lock:
            for variant in self._forms(value):
                if not self._held[variant]:
                    continue
                _release(self._held, [variant])
                _release(self._pieces, {variant[start:start + PIECE] for start in range(len(variant) - PIECE + 1)})
            self._variants = tuple(sorted(self._held, key=len, reverse=True))

    def add_generated(self, value: str) -> None:
        """A password this run made: masked for the rest of the run, like the keys, but only the latest
        GENERATED_KEPT of them, so that a run of ten thousand sites neither grows nor slows its masking."""
        self.add(value)
        with self._lock:
            self._generated.append(value)
            evicted = self._generated.popleft() if len(self._generated) > GENERATED_KEPT else None
        if evicted is not None:
            self.discard(evicted)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._pieces.clear()
            self._variants = ()
            self._generated.clear()

    @property
    def longest(self) -> int:
        return len(self._variants[0]) if self._variants else 0

    def mask(self, text: _T) -> _T:
        """`text` with every secret, and every piece of one, replaced by ***; anything but a string as it is."""
        if not isinstance(text, str) or not self._variants:
            return text
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, MASK)
        pieces = self._pieces
        hidden = [False] * len(text)
        for start in range(len(text) - PIECE + 1):
            if text[start:start + PIECE] in pieces:
                hidden[start:start + PIECE] = [True] * PIECE
        if not any(hidden):
            return text
        shown, previous = [], False
        for character, secret in zip(text, hidden):
            if not secret:
                shown.append(character)
            elif not previous:
                shown.append(MASK)
            previous = secret
        return "".join(shown)

    def excerpt(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text` on one line, masked before they are cut (a secret cut in half would
        no longer be recognised); "…" marks the cut."""
        text = " ".join(self.mask(text[:limit + self.longest + PIECE]).split())
        return text if len(text) <= limit else text[:limit - 1] + "…"


def _release(counts, keys):
    """One holder less for each key; a key no secret holds any more is dropped."""
    for key in keys:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]


secret_values = SecretValues()
