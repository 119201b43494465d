#!/usr/bin/env python3
# ci: --check
"""Golden files for r1lab qgemm, from an independent numpy implementation.

What it computes: for every case below, float32 activations x (M, K) and
weights w (N, K) (and a bias), their quantized forms by the QUANTIZERS text of
include/r1lab/qgemm.h, and the products by its PRODUCTS text:

  W8A8   s = max(amax_row, 1e-4) / 127, q = clamp(rint(x / s), -127, 127);
         acc = qx . qwT exact (int64 here, stored I32);
         y = (f32(acc) * s_x[m]) * s_w[n] + bias   (float32 operations)
  W4A16  groups of 128 along K; symmetric s = amax / 7, q in [-8, 7];
         asymmetric lo = min(min, 0), hi = max(max, 0), s = (hi - lo) / 15,
         z = clamp(rint(-lo / s), 0, 15), q = clamp(rint(x / s) + z, 0, 15);
         x rounded to bf16; y = sum_k x_bf16 * ((q - z) * s)  (float64 sum)
  FP8    x: 1 x 128 tiles, w: 128 x 128 blocks, s = max(amax, 1e-4) / 448
         (pow2: smallest power of two >= s), q = e4m3(x / s) saturating;
         y = sum_kb (s_x[m, kb] * s_w[n/128, kb]) * sum_{k in kb} qx * qw   (float64 sums)

All quantizer arithmetic is float32 in numpy (np.float32 arrays, correctly
rounded division, np.rint = round half to even). The e4m3 rounding here is a
nearest-value search over the table of all 127 finite magnitudes (ties to the
even code), not the bit manipulation of core/dtype.c.

Each file also holds y_exact, the float64 product of the UNQUANTIZED x and w
(+ bias; every float64 product here sums over k in order, product_f64, so the
files do not depend on the machine's BLAS), and the metadata calc_diff = 1 - 2 sum(a b) / sum(a^2 + b^2)
(DeepGEMM's measure) between y and y_exact: the size of the quantization error.

Run from the repository root:
    python3 golden/gen/qgemm.py           regenerate golden/qgemm/*.safetensors and MANIFEST lines
    python3 golden/gen/qgemm.py --check   regenerate in memory, compare with the committed files
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest  # noqa: E402

SCRIPT = "golden/gen/qgemm.py"
OUT_DIR = "golden/qgemm"
MANIFEST = "golden/MANIFEST"
F32 = np.float32
BLOCK = 128
FLOOR = F32(1e-4)

# ----------------------------------------------------------------------------
# number formats


def f32_to_bf16_bits(x):
    bits = np.ascontiguousarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(F32)


def e4m3_magnitudes():
    """The 127 finite non-negative E4M3 values, index = code (0x00..0x7E)."""
    values = []
    for code in range(0x7F):
        e, m = code >> 3, code & 7
        values.append(m / 8.0 * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7))
    return np.array(values, dtype=np.float64)


E4M3 = e4m3_magnitudes()
assert E4M3[-1] == 448.0 and np.all(np.diff(E4M3) > 0)


def f32_to_e4m3(x):
    """Round to the nearest E4M3 value, ties to the even code, saturating at 448."""
    x = np.asarray(x, dtype=F32)
    mag = np.abs(x).astype(np.float64)
    hi = np.clip(np.searchsorted(E4M3, mag, side="left"), 0, len(E4M3) - 1)
    lo = np.clip(hi - 1, 0, len(E4M3) - 1)
    d_lo, d_hi = np.abs(mag - E4M3[lo]), np.abs(E4M3[hi] - mag)
    code = np.where(d_lo < d_hi, lo, hi)
    tie = (d_lo == d_hi) & (lo != hi)
    code = np.where(tie, np.where(lo % 2 == 0, lo, hi), code)
    code = np.where(mag >= 448.0, 0x7E, code)
    sign = np.signbit(x).astype(np.int64) << 7
    return (code | sign).astype(np.uint8)


def e4m3_to_f64(codes):
    codes = np.asarray(codes, dtype=np.uint8).astype(np.int64)
    mag = E4M3[codes & 0x7F]
    return np.where(codes & 0x80, -mag, mag)


def pack_i4(levels):
    """(R, K) ints in [-8, 15] -> (R, K/2) bytes, element 2i in the low nibble."""
    nib = (np.asarray(levels, dtype=np.int64) & 0xF).astype(np.uint8)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


# ----------------------------------------------------------------------------
# quantizers (float32 throughout)


def quant_w8a8(x):
    amax = np.maximum(np.max(np.abs(x), axis=1), FLOOR).astype(F32)
    s = (amax / F32(127)).astype(F32)
    q = np.clip(np.rint(x / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def quant_w4a16(w, asymmetric):
    N, K = w.shape
    g = w.reshape(N, K // BLOCK, BLOCK)
    if not asymmetric:
        s = (np.maximum(np.max(np.abs(g), axis=2), FLOOR) / F32(7)).astype(F32)
        q = np.clip(np.rint(g / s[:, :, None]), -8, 7)
        z = np.zeros_like(s, dtype=np.uint8)
    else:
        lo = np.minimum(np.min(g, axis=2), F32(0)).astype(F32)
        hi = np.maximum(np.max(g, axis=2), F32(0)).astype(F32)
        s = (np.maximum((hi - lo).astype(F32), FLOOR) / F32(15)).astype(F32)
        z = np.clip(np.rint(-lo / s), 0, 15).astype(F32)
        q = np.clip(np.rint(g / s[:, :, None]) + z[:, :, None], 0, 15)
        z = z.astype(np.uint8)
    return q.reshape(N, K).astype(np.int64), s, z


def pow2_at_least(s):
    f, e = np.frexp(s.astype(F32))
    return np.where(f == F32(0.5), np.ldexp(F32(1), e - 1), np.ldexp(F32(1), e)).astype(F32)


def fp8_scale(amax, pow2):
    s = (np.maximum(amax, FLOOR) / F32(448)).astype(F32)
    return pow2_at_least(s) if pow2 else s


def quant_fp8_act(x, pow2):
    M, K = x.shape
    t = x.reshape(M, K // BLOCK, BLOCK)
    s = fp8_scale(np.max(np.abs(t), axis=2).astype(F32), pow2)
    q = f32_to_e4m3((t / s[:, :, None]).astype(F32)).reshape(M, K)
    return q, s


def quant_fp8_weight(w, pow2):
    N, K = w.shape
    nb = (N + BLOCK - 1) // BLOCK
    s = np.zeros((nb, K // BLOCK), dtype=F32)
    q = np.zeros((N, K), dtype=np.uint8)
    for i in range(nb):
        rows = slice(i * BLOCK, min(N, (i + 1) * BLOCK))
        blk = w[rows].reshape(-1, K // BLOCK, BLOCK)
        s[i] = fp8_scale(np.max(np.abs(blk), axis=(0, 2)).astype(F32), pow2)
        q[rows] = f32_to_e4m3((blk / s[i][None, :, None]).astype(F32)).reshape(-1, K)
    return q, s


# ----------------------------------------------------------------------------
# products


def product_f64(a, b):
    """a (M, K) times b (N, K) transposed, in float64, summed over k in the order
    0, 1, ..., K - 1: one rounding per product and per sum, so every machine
    writes the same bits (a BLAS matmul orders its sums by the CPU's vector
    width, and on another CPU its last bits, and so these files, differed)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((a.shape[0], b.shape[0]))
    for k in range(a.shape[1]):
        out += np.multiply.outer(a[:, k], b[:, k])
    return out


def calc_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.sum(a * a + b * b)
    return float(1.0 - 2.0 * np.sum(a * b) / denom) if denom > 0 else 0.0


def case_w8a8(x, w, bias):
    qx, sx = quant_w8a8(x)
    qw, sw = quant_w8a8(w)
    acc = qx.astype(np.int64) @ qw.astype(np.int64).T
    assert np.abs(acc).max() < 2 ** 31
    y = (acc.astype(F32) * sx[:, None]).astype(F32) * sw[None, :]
    y = (y + bias[None, :]).astype(F32)
    t = dict(x=x, w=w, bias=bias, qx=qx, sx=sx, qw=qw, sw=sw, acc=acc.astype(np.int32), y=y)
    return t, y


def case_w4a16(x, w, bias, asymmetric):
    xb = f32_to_bf16_bits(x)
    q, s, z = quant_w4a16(w, asymmetric)
    N, K = w.shape
    level = q - (np.repeat(z.astype(np.int64), BLOCK, axis=1) if asymmetric else 0)
    wdeq = (level.astype(F32) * np.repeat(s, BLOCK, axis=1)).astype(F32)
    y = (product_f64(bf16_bits_to_f32(xb), wdeq) + bias).astype(F32)
    t = dict(x=x, w=w, bias=bias, x_bf16=xb, qw=pack_i4(q), sw=s, wdeq=wdeq, y=y)
    if asymmetric:
        t["zw"] = z
    return t, y


def case_fp8(x, w, bias, pow2):
    qx, sx = quant_fp8_act(x, pow2)
    qw, sw = quant_fp8_weight(w, pow2)
    M, K = x.shape
    N = w.shape[0]
    fx, fw = e4m3_to_f64(qx), e4m3_to_f64(qw)
    y = np.zeros((M, N))
    for kb in range(K // BLOCK):
        ks = slice(kb * BLOCK, (kb + 1) * BLOCK)
        partial = product_f64(fx[:, ks], fw[:, ks])
        scale = (sx[:, kb][:, None] * sw[np.arange(N) // BLOCK, kb][None, :]).astype(F32)
        y += partial * scale
    y = (y + bias).astype(F32)
    t = dict(x=x, w=w, bias=bias, qx=qx, sx=sx, qw=qw, sw=sw, y=y)
    return t, y


# ----------------------------------------------------------------------------
# cases


def inputs(rng, M, N, K, kind):
    x = rng.standard_normal((M, K)).astype(F32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(F32)
    bias = (rng.standard_normal(N) * 0.1).astype(F32)
    if kind == "zero":  # all-zero rows / tiles / blocks: the 1e-4 scale floor
        x[0] = 0
        w[0] = 0
        if K >= 2 * BLOCK:
            x[-1, BLOCK:2 * BLOCK] = 0
            w[:, :BLOCK] = 0
    elif kind == "outliers":  # one huge value per row: the rest lose resolution
        for r in range(M):
            x[r, rng.integers(K)] = F32(300.0 * (1 + r))
        for r in range(N):
            w[r, rng.integers(K)] = F32(-40.0)
    elif kind == "tiny":  # amax below the floor: scales are floor / qmax
        x *= F32(1e-6)
        w *= F32(1e-6)
    return x, w, bias


# name, scheme, M, N, K, kind, options
CASES = [
    ("w8a8_m1_n7_k64", "w8a8", 1, 7, 64, "normal", {}),
    ("w8a8_m5_n33_k100", "w8a8", 5, 33, 100, "normal", {}),
    ("w8a8_m16_n64_k256", "w8a8", 16, 64, 256, "normal", {}),
    ("w8a8_zero_rows_m4_n9_k384", "w8a8", 4, 9, 384, "zero", {}),
    ("w8a8_outliers_m3_n17_k512", "w8a8", 3, 17, 512, "outliers", {}),
    ("w8a8_tiny_m2_n5_k128", "w8a8", 2, 5, 128, "tiny", {}),
    ("w8a8_m2_n3_k7168", "w8a8", 2, 3, 7168, "normal", {}),
    ("w8a8_m1_n3_k18432", "w8a8", 1, 3, 18432, "normal", {}),
    ("w4a16_sym_m1_n9_k256", "w4a16", 1, 9, 256, "normal", {"asymmetric": 0}),
    ("w4a16_asym_m3_n16_k384", "w4a16", 3, 16, 384, "normal", {"asymmetric": 1}),
    ("w4a16_sym_zero_m4_n8_k512", "w4a16", 4, 8, 512, "zero", {"asymmetric": 0}),
    ("w4a16_asym_outliers_m2_n11_k256", "w4a16", 2, 11, 256, "outliers", {"asymmetric": 1}),
    ("w4a16_asym_m2_n5_k7168", "w4a16", 2, 5, 7168, "normal", {"asymmetric": 1}),
    ("w4a16_sym_m1_n4_k18432", "w4a16", 1, 4, 18432, "normal", {"asymmetric": 0}),
    ("fp8_m1_n7_k128", "fp8", 1, 7, 128, "normal", {"pow2": 0}),
    ("fp8_m4_n130_k256", "fp8", 4, 130, 256, "normal", {"pow2": 0}),
    ("fp8_pow2_m3_n16_k384", "fp8", 3, 16, 384, "normal", {"pow2": 1}),
    ("fp8_zero_tiles_m3_n9_k384", "fp8", 3, 9, 384, "zero", {"pow2": 0}),
    ("fp8_outliers_m2_n8_k512", "fp8", 2, 8, 512, "outliers", {"pow2": 0}),
    ("fp8_pow2_tiny_m2_n5_k256", "fp8", 2, 5, 256, "tiny", {"pow2": 1}),
    ("fp8_m2_n5_k7168", "fp8", 2, 5, 7168, "normal", {"pow2": 0}),
    ("fp8_m1_n4_k18432", "fp8", 1, 4, 18432, "normal", {"pow2": 1}),
]

# The expected size of the quantization error (calc_diff of y against the
# unquantized float64 product) for normal(0, 1) x and normal(0, 0.05) w:
# int8 has a step of 1/127 of the row's amax (~3.5 sigma): calc_diff ~ 5e-5;
# e4m3 has 3 mantissa bits (relative step 2^-4): ~ 5e-4; int4 groups have 15
# levels: ~ 3e-3. The bounds below are about 10x that, because a case with a
# handful of outputs (M = 1, N = 4) measures it with large sampling noise. The
# C tests assert their own calc_diff is below the bound stored with each case.
# Outlier rows lose resolution by design (bound 1; 2 would be uncorrelated).
CALC_DIFF_BOUND = {("w8a8", "normal"): 5e-4, ("w4a16", "normal"): 3e-2, ("fp8", "normal"): 1e-2}


def bound_for(scheme, kind):
    if kind in ("normal", "zero", "tiny"):
        return CALC_DIFF_BOUND[(scheme, "normal")]
    return 1.0  # outliers: the scale is set by one huge value per row (2 = uncorrelated)


def conversion_case():
    """e4m3 conversion of crafted values: ties, subnormals, 448 and beyond (saturation)."""
    vals = [0.0, -0.0, 1.0, -1.0, 448.0, -448.0, 449.0, 464.0, 479.9, 480.0, 1e6, -1e30,
            2.0 ** -9, 2.0 ** -10, 1.5 * 2.0 ** -10, 2.0 ** -10 * 0.999, 3 * 2.0 ** -10,
            1.0625, 1.1875, 1.125 + 1 / 32, 240.0, 232.0, 248.0, 0.015625, 0.0146484375,
            -3.5e-3, 7e-4, 1e-20, 300.0, 17.0, 18.0, 19.0]
    vals += list(np.linspace(-500, 500, 2001))
    x = np.array(vals, dtype=F32)
    return dict(x=x, q=f32_to_e4m3(x))


def make_case(index, spec):
    name, scheme, M, N, K, kind, opts = spec
    seed = 8000 + index
    rng = np.random.default_rng(seed)
    x, w, bias = inputs(rng, M, N, K, kind)
    if scheme == "w8a8":
        t, y = case_w8a8(x, w, bias)
    elif scheme == "w4a16":
        t, y = case_w4a16(x, w, bias, opts["asymmetric"])
    else:
        t, y = case_fp8(x, w, bias, opts["pow2"])
    y_exact = product_f64(x, w) + bias
    t["y_exact"] = y_exact
    meta = dict(case=name, scheme=scheme, M=M, N=N, K=K, kind=kind, seed=seed,
                asymmetric=opts.get("asymmetric", 0), pow2_scales=opts.get("pow2", 0),
                calc_diff=f"{calc_diff(y, y_exact):.6e}", calc_diff_bound=bound_for(scheme, kind))
    assert calc_diff(y, y_exact) <= bound_for(scheme, kind), (name, calc_diff(y, y_exact))
    return name, seed, t, meta


# ----------------------------------------------------------------------------
# serialization (fixed order, byte-reproducible)

DTYPES = {np.dtype(F32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int8): "I8",
          np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.uint16): "BF16"}


def serialize(tensors, meta):
    header, blobs, offset = {}, [], 0
    for key, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[key] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (len(text) + 8) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def ordered(t):
    """8-byte tensors first, then 4, 2, 1 (every tensor aligned), stable."""
    return dict(sorted(t.items(), key=lambda kv: -np.asarray(kv[1]).dtype.itemsize))


def build():
    files = []
    for i, spec in enumerate(CASES):
        name, seed, t, meta = make_case(i, spec)
        files.append((f"{OUT_DIR}/{name}.safetensors", seed, t, serialize(ordered(t), meta)))
    conv = conversion_case()
    files.append((f"{OUT_DIR}/e4m3_saturation.safetensors", 0, conv,
                  serialize(ordered(conv), dict(case="e4m3_saturation", scheme="conversion"))))
    return files


def self_check(files):
    import safetensors
    for path, _, tensors, blob in files:
        read = dict(safetensors.deserialize(blob))
        assert sorted(read) == sorted(tensors), path
        for key, arr in tensors.items():
            arr = np.ascontiguousarray(arr)
            assert list(read[key]["shape"]) == list(arr.shape), (path, key)
            assert bytes(read[key]["data"]) == arr.tobytes(), (path, key)
    # Hand-worked values of the e4m3 rounding.
    assert f32_to_e4m3(np.array([448, 464, 480, 1e9], F32)).tolist() == [0x7E] * 4
    assert f32_to_e4m3(np.array([1.0625, 1.1875], F32)).tolist() == [0x38, 0x3A]  # ties to even
    assert f32_to_e4m3(np.array([2.0 ** -10, -0.0], F32)).tolist() == [0x00, 0x80]
    assert e4m3_to_f64([0x01])[0] == 2.0 ** -9
    assert pow2_at_least(np.array([0.25, 0.3], F32)).tolist() == [0.25, 0.5]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    files = build()
    self_check(files)
    total = sum(len(b) for _, _, _, b in files)
    if args.check:
        bad = [p for p, _, _, b in files if not os.path.exists(p) or open(p, "rb").read() != b]
        if bad:
            print("differ from the generator (regenerate: python3 golden/gen/qgemm.py):")
            for p in bad:
                print("  " + p)
            return 1
        print(f"qgemm goldens: {len(files)} files match ({total / 2**20:.2f} MiB)")
        return 0
    os.makedirs(OUT_DIR, exist_ok=True)
    for path, _, _, blob in files:
        with open(path, "wb") as f:
            f.write(blob)
    manifest.replace_folder(OUT_DIR, [f"{path} {SCRIPT} {seed} {hashlib.sha256(blob).hexdigest()}"
                                      for path, seed, _, blob in files])
    for path, _, _, blob in files:
        print(f"{path}: {len(blob)} bytes")
    print(f"total {total / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
