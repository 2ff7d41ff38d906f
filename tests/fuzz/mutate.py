"""A small seeded byte mutator for the deterministic fuzz runs.

libFuzzer (through atheris) does coverage-guided mutation when fuzzing by
hand; the trial suite cannot depend on it, so :func:`mutations` derives a
fixed sequence of inputs from the seed corpus with a fixed
:class:`random.Random` seed: the same inputs on every run and machine.
The operators are libFuzzer's basic ones (bit flips, byte changes,
insertions, deletions, chunk copies, splices of two seeds) plus
"interesting" big-endian integers, which hit RFB's and TLS's length
fields.
"""

from __future__ import annotations

import random
import struct
from typing import Iterator, Sequence

__all__ = ["mutate", "mutations", "MAX_SIZE"]

#: Mutated inputs stay below this size (the seeds are a few KB at most).
MAX_SIZE = 16 * 1024

_INTERESTING = (
    b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01",
    struct.pack(">H", 0), struct.pack(">H", 0xFFFF), struct.pack(">H", 0x8000),
    struct.pack(">I", 0), struct.pack(">I", 0xFFFFFFFF), struct.pack(">I", 0x7FFFFFFF),
    struct.pack(">I", 0x80000000), struct.pack(">i", -1), struct.pack(">I", 1 << 16),
    b",", b",,", b"=", b"\"", b"\\", b"\n", b"\r\n", b"{", b"}", b"[", b"]", b"'",
    b"-----", b"\xc3\xa9", b"\xe2\x80\xa8", b"\xed\xa0\x80",
)


def _flip(data: bytearray, rng: random.Random) -> None:
    if data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _set_byte(data: bytearray, rng: random.Random) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.randrange(256)


def _insert(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data) + 1)
    data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))


def _delete(data: bytearray, rng: random.Random) -> None:
    if data:
        i = rng.randrange(len(data))
        del data[i:i + rng.randrange(1, 17)]


def _interesting(data: bytearray, rng: random.Random) -> None:
    value = rng.choice(_INTERESTING)
    i = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        data[i:i + len(value)] = value
    else:
        data[i:i] = value


def _copy_chunk(data: bytearray, rng: random.Random) -> None:
    if data:
        i = rng.randrange(len(data))
        chunk = data[i:i + rng.randrange(1, 65)]
        j = rng.randrange(len(data) + 1)
        data[j:j] = chunk * rng.choice((1, 1, 2, 8))


def _truncate(data: bytearray, rng: random.Random) -> None:
    if data:
        del data[rng.randrange(len(data)):]


_OPERATORS = (_flip, _set_byte, _insert, _delete, _interesting, _copy_chunk, _truncate)


def mutate(data: bytes, rng: random.Random, other: bytes = b"") -> bytes:
    """One mutant of ``data``: 1-4 operators, sometimes a splice with ``other``."""
    out = bytearray(data)
    if other and rng.random() < 0.1:
        cut = rng.randrange(len(out) + 1)
        out = out[:cut] + other[rng.randrange(len(other) + 1):]
    for _ in range(rng.randrange(1, 5)):
        rng.choice(_OPERATORS)(out, rng)
    return bytes(out[:MAX_SIZE])


def mutations(seeds: Sequence[bytes], count: int, seed: int) -> Iterator[bytes]:
    """``count`` mutants of ``seeds`` (round robin), reproducible from ``seed``."""
    rng = random.Random(seed)
    pool = list(seeds) or [b""]
    for n in range(count):
        yield mutate(pool[n % len(pool)], rng, rng.choice(pool))
