"""Philox4x32-10 in numpy, independent of r1lab's C code (include/r1lab/philox.h).

Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3"
(SC 2011). One round maps counter (c0, c1, c2, c3) under key (k0, k1) to

    hi0:lo0 = M0 * c0        M0 = 0xD2511F53   (32 x 32 -> 64-bit product)
    hi1:lo1 = M1 * c2        M1 = 0xCD9E8D57
    (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

and the key is bumped between rounds by the Weyl constants
k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2^32). Ten rounds.

All words are held in numpy uint64 arrays with values < 2^32, so the 32x32
products are exact in uint64 and every function is vectorized over any number
of (counter, key) pairs.

r1lab's sampling uniform for (seed, row, step):
    key     = (seed & 0xffffffff, seed >> 32)
    counter = (row & 0xffffffff, row >> 32, step & 0xffffffff, step >> 32)
    x       = Philox4x32-10(counter, key)
    u       = ((x0 << 21) ^ (x1 >> 11)) * 2^-53      (float64 in [0, 1), exact)

Run `python3 golden/gen/philox.py` for the self-test; it also runs at import.
"""

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
SHIFT32 = np.uint64(32)


def _words(values):
    """Any int-like (python ints up to 2^64-1 included) -> uint64 array."""
    return np.asarray(values, dtype=np.uint64)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counters (c0..c3) under keys (k0, k1).

    Arguments broadcast against each other; each must hold values < 2^32.
    Returns four uint64 arrays with the 32-bit output words.
    """
    c0, c1, c2, c3, k0, k1 = np.broadcast_arrays(*(_words(v) for v in (c0, c1, c2, c3, k0, k1)))
    for name, v in (("c0", c0), ("c1", c1), ("c2", c2), ("c3", c3), ("k0", k0), ("k1", k1)):
        if np.any(v > MASK32):
            raise ValueError(f"philox word {name} does not fit in 32 bits")
    c0, c1, c2, c3, k0, k1 = (v.copy() for v in (c0, c1, c2, c3, k0, k1))
    for _ in range(10):
        product0 = M0 * c0  # < 2^64: exact in uint64
        product1 = M1 * c2
        high0, low0 = product0 >> SHIFT32, product0 & MASK32
        high1, low1 = product1 >> SHIFT32, product1 & MASK32
        c0, c1, c2, c3 = high1 ^ c1 ^ k0, low1, high0 ^ c3 ^ k1, low0
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


def philox_draw(seed, row, step):
    """The four words for (seed, row, step), each a uint64 in [0, 2^64)."""
    seed, row, step = np.broadcast_arrays(_words(seed), _words(row), _words(step))
    return philox4x32_10(row & MASK32, row >> SHIFT32, step & MASK32, step >> SHIFT32,
                         seed & MASK32, seed >> SHIFT32)


def uniform_f64(x0, x1):
    """u = ((x0 << 21) ^ (x1 >> 11)) * 2^-53: 53 bits, exact as float64."""
    bits53 = (_words(x0) << np.uint64(21)) ^ (_words(x1) >> np.uint64(11))
    assert np.all(bits53 < (np.uint64(1) << np.uint64(53)))
    # bits53 < 2^53 converts to float64 exactly; the power-of-two scale is exact.
    return bits53.astype(np.float64) * (2.0 ** -53)


def sampling_uniform(seed, row, step):
    """The u that r1lab sampling uses for (seed, row, step); vectorized."""
    x0, x1, _, _ = philox_draw(seed, row, step)
    return uniform_f64(x0, x1)


# Random123 known-answer vectors for philox4x32-10 (kat_vectors).
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def self_test():
    """Checks the known answers, scalar and vectorized, and the u definition."""
    for counter, key, expected in KNOWN_ANSWERS:
        got = tuple(int(w) for w in philox4x32_10(*counter, *key))
        if got != expected:
            raise AssertionError(f"philox KAT failed: counter={counter} key={key} "
                                 f"got={[hex(w) for w in got]} expected={[hex(w) for w in expected]}")
    # The same three vectors in one vectorized call.
    columns = [np.array([kat[0][i] for kat in KNOWN_ANSWERS], dtype=np.uint64) for i in range(4)]
    keys = [np.array([kat[1][i] for kat in KNOWN_ANSWERS], dtype=np.uint64) for i in range(2)]
    out = philox4x32_10(*columns, *keys)
    for j, kat in enumerate(KNOWN_ANSWERS):
        if tuple(int(out[i][j]) for i in range(4)) != kat[2]:
            raise AssertionError("vectorized philox KAT failed")
    # philox_draw splits 64-bit seed / row / step into the documented words.
    seed, row, step = 0x299F31D0A4093822, 0x85A308D3243F6A88, 0x0370734413198A2E
    if tuple(int(w) for w in philox_draw(seed, row, step)) != KNOWN_ANSWERS[2][2]:
        raise AssertionError("philox_draw word split failed")
    # u from the KAT words, computed with python integers.
    x0, x1 = KNOWN_ANSWERS[2][2][:2]
    want = float(((x0 << 21) ^ (x1 >> 11))) / 2.0 ** 53
    if float(sampling_uniform(seed, row, step)) != want:
        raise AssertionError("sampling_uniform definition failed")
    u_max = sampling_uniform(2**64 - 1, 2**64 - 1, 2**64 - 1)
    if not (0.0 <= float(u_max) < 1.0):
        raise AssertionError("u outside [0, 1)")


self_test()

if __name__ == "__main__":
    for counter, key, expected in KNOWN_ANSWERS:
        print("ctr", [hex(w) for w in counter], "key", [hex(w) for w in key],
              "->", [hex(w) for w in expected], "ok")
    print("u(seed=0,row=0,step=0) =", repr(float(sampling_uniform(0, 0, 0))))
    print("philox self-test passed")
