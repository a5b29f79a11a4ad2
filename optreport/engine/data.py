"""Fashion-MNIST as in-memory tensors, parsed from the original IDX files.

    data = load_fashion_mnist()          # finds the files, parses, splits, standardises
    data.train_x.shape                   # (55000, 1, 28, 28) float32
    data.source                          # folder the four files came from

Where the files are looked for, first hit wins:
  1. the ``root`` argument, else the ``FMNIST_DIR`` environment variable: a folder holding the
     four files (``train-images-idx3-ubyte[.gz]`` ...), or torchvision's layout
     ``<root>/FashionMNIST/raw/``;
  2. Debian's package ``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist/``;
  3. torchvision's downloader into ``~/.cache/fashion-mnist`` (needs internet).
A folder named explicitly (1) that lacks the files is an error, not a fall-through: the caller
asked for that copy.

The IDX format (http://yann.lecun.com/exdb/mnist/) is parsed here with numpy, checking the
magic number, the dimensions and the exact byte count, so a truncated download fails loudly
(``CorruptDataError``) instead of training on garbage.

Two data protocols (``protocol=``; a run's ``RunConfig.data_protocol``):

* ``"report"`` (default, the report's own): a random validation split of ``val_size`` images
  (permutation seeded by ``split_seed``), pixels ``uint8 / 255`` then standardised with the
  training split's own mean and std; every test image.
* ``"deepobs"``: DeepOBS's ``fmnist_2c2d`` data as the published (TensorFlow) runs of Crowded
  Valley saw it (build/deepobs_2c2d_findings.md; ``fsschneider/DeepOBS@ee79d9f1:
  deepobs/tensorflow/datasets/fmnist.py``): pixels ``uint8 / 255`` only, in [0, 1], no mean/std;
  validation = the FIRST ``val_size`` (DeepOBS: 10,000) images of the training file, unshuffled
  and the same for every seed; training = the other images (50,000) in file order; validation and
  test sets cut to whole batches of ``batch_size`` as DeepOBS's ``drop_remainder=True`` evaluates
  them (at 128: the first 9,984 of the 10,000 test images, 78 batches). The trainer, given
  ``data_protocol="deepobs"``, drops the last partial training batch (390 steps of 128 per epoch).
  Not reproducible exactly, and so not reproduced: DeepOBS shuffles the training split with
  ``tf.data``'s buffered shuffle (buffer 20,000, not a uniform permutation) driven by TensorFlow's
  RNG; we draw a full ``torch.randperm`` per epoch from our own seed, so batches hold other images
  (seeds are comparable as distributions, never one by one). DeepOBS's "train" metric (an eval
  pass over 9,984 training images after each epoch) and its epoch-0 evaluation are not produced.
  The deepobs pipeline has its own version, :data:`DEEPOBS_DATA_VERSION`, which enters the key of
  deepobs runs only (report runs keep their keys).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

__all__ = ["FashionMNIST", "load_fashion_mnist", "DataNotFoundError", "CorruptDataError", "PROTOCOLS",
           "DEEPOBS_DATA_VERSION", "DEEPOBS_VAL_SIZE", "DEEPOBS_BATCH_SIZE", "read_idx", "write_idx", "write_fixture",
           "find_files", "FILES", "CLASSES", "DEBIAN_DIR", "CACHE_DIR"]

# File stems of the four original files; each may be stored raw or gzipped.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")    # apt-get install dataset-fashion-mnist
CACHE_DIR = Path(os.path.expanduser("~/.cache/fashion-mnist"))  # torchvision download target

# Known statistics of the pixel values (uint8 / 255) of the 60,000 original training images,
# for reference and tests: mean 0.2860, std 0.3530. We do not hard-code them: the loader
# standardises with the mean/std of *its own* training split (the 60,000 minus the held-out
# validation images), computed at load time and stored in FashionMNIST.mean / .std, so
# that no statistic of the validation or test images leaks into training.
#: Version of the data pipeline (parsing, scaling, the validation split). It enters every run's
#: key: bump it when a change alters the tensors a run sees (tests/test_golden.py checks).
DATA_VERSION = 1
#: Version of the "deepobs" protocol's pipeline (scaling, split, cut to whole batches); it enters
#: the key of deepobs-protocol runs only. Bump it when that pipeline's tensors change.
DEEPOBS_DATA_VERSION = 1
PROTOCOLS = ("report", "deepobs")   # data protocols (see the module docstring)
DEEPOBS_VAL_SIZE = 10_000           # DeepOBS's validation split: the first 10,000 training images
DEEPOBS_BATCH_SIZE = 128            # DeepOBS's batch size for fmnist_2c2d (train, valid and test)
TRAIN_SIZE = 60_000        # images in Fashion-MNIST's training file (validation split included)

FMNIST_TRAIN_MEAN = 0.2860
FMNIST_TRAIN_STD = 0.3530

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GOOD_COPY = ("get a good copy: `apt-get install --reinstall dataset-fashion-mnist`, or download "
              "it again from https://github.com/zalandoresearch/fashion-mnist")


class DataNotFoundError(FileNotFoundError):
    """No copy of Fashion-MNIST could be found or downloaded."""


class CorruptDataError(ValueError):
    """A Fashion-MNIST file exists but is truncated or not what it claims to be."""


@dataclasses.dataclass(frozen=True, eq=False)
class FashionMNIST:
    """The three splits as tensors: images float32 (N, 1, 28, 28) standardised, labels int64."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str            # folder the four files were read from
    mean: float = 0.0      # pixel mean (of uint8/255 values) of the training split used
    std: float = 1.0       # pixel std of the training split used
    protocol: str = "report"         # data protocol (module docstring): "report" | "deepobs"
    batch_size: int | None = None    # deepobs: val/test cut to whole batches of this size

    def __repr__(self):
        return (f"FashionMNIST(train={len(self.train_y)}, val={len(self.val_y)}, "
                f"test={len(self.test_y)}, source={self.source!r})")


# --------------------------------------------------------------------------- IDX format

def read_idx(path) -> np.ndarray:
    """Parse one IDX file (raw, or gzipped when the name ends in .gz) into a numpy array."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                buf = f.read()
        else:
            buf = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:   # BadGzipFile is an OSError
        raise CorruptDataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} "
                               f"({e}); {_GOOD_COPY}") from e
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{path}: not an IDX file (bad magic number {buf[:4].hex() or 'empty'}); "
                               f"{_GOOD_COPY}")
    dtype, ndim = _IDX_DTYPES[buf[2]], buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise CorruptDataError(f"{path}: truncated header; {_GOOD_COPY}")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise CorruptDataError(f"{path}: {len(buf)} bytes, but its header {dims} says {expected} "
                               f"(truncated or padded); {_GOOD_COPY}")
    return np.frombuffer(buf, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array: np.ndarray) -> None:
    """Write an array as IDX (gzipped if the name ends in .gz), atomically. Used for fixtures."""
    path = Path(path)
    array = np.asarray(array)
    code = {v.newbyteorder("="): k for k, v in _IDX_DTYPES.items()}[array.dtype.newbyteorder("=")]
    payload = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
               + array.astype(_IDX_DTYPES[code]).tobytes())
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    _atomic_write(path, payload)


def write_fixture(folder, n_train: int = 600, n_test: int = 100, *, seed: int = 0, gz: bool = True) -> Path:
    """Write a tiny synthetic Fashion-MNIST look-alike (four IDX files) for tests and quick runs.

    Each class has its own random template; an image is its class's template plus noise, so a
    network can learn the task within a few steps."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(len(CLASSES), 28, 28))
    folder = Path(folder)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, len(CLASSES), size=n).astype(np.uint8)
        x = np.clip(templates[y] + rng.normal(0, 60, size=(n, 28, 28)), 0, 255).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / (FILES[f"{split}_images"] + suffix), x)
        write_idx(folder / (FILES[f"{split}_labels"] + suffix), y)
    return folder


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, then os.replace: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- finding files

def find_files(folder) -> dict[str, Path] | None:
    """The four files in ``folder`` (or ``folder/FashionMNIST/raw``), raw preferred over .gz."""
    for d in (Path(folder), Path(folder) / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in FILES.items():
            for name in (stem, stem + ".gz"):
                if (d / name).is_file():
                    found[key] = d / name
                    break
        if len(found) == len(FILES):
            return found
    return None


def _not_found_message(tried) -> str:
    return ("Fashion-MNIST not found (looked in: " + ", ".join(map(str, tried)) + "). Any of:\n"
            "  1. set FMNIST_DIR=/path/to/folder (or pass root=) holding train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz];\n"
            "  2. apt-get install dataset-fashion-mnist  (installs them in /usr/share/datasets/fashion-mnist);\n"
            f"  3. connect to the internet so torchvision can download them into {CACHE_DIR}.")


def _torchvision_download(cache: Path) -> Path:
    """Download with torchvision into a temp folder, then move it into place atomically."""
    import torchvision  # noqa: PLC0415 -- the last resort only; torchvision is slow to import
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}."))
    try:
        torchvision.datasets.FashionMNIST(str(tmp), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(tmp), train=False, download=True)
        if find_files(tmp) is None:
            raise OSError("torchvision finished but the files are missing")
        os.replace(tmp, cache)     # atomic when cache does not exist yet
        return cache
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate(root=None, *, download=True) -> dict[str, Path]:
    """Paths of the four files, searched in the order given in the module docstring."""
    explicit = root if root is not None else os.environ.get("FMNIST_DIR") or None
    if explicit is not None:
        found = find_files(explicit)
        if found is None:
            raise DataNotFoundError(_not_found_message([explicit]))
        return found
    tried = [DEBIAN_DIR, CACHE_DIR]
    for folder in tried:
        found = find_files(folder)
        if found is not None:
            return found
    if download:
        try:
            found = find_files(_torchvision_download(CACHE_DIR))
            if found is not None:
                return found
        except Exception as e:     # no internet, no torchvision, read-only home...
            raise DataNotFoundError(_not_found_message(tried) + f"\n(torchvision download failed: {e})") from e
    raise DataNotFoundError(_not_found_message(tried))


# --------------------------------------------------------------------------- loading

@functools.lru_cache(maxsize=8)
def _parse(paths: tuple[tuple[str, str], ...]):
    """Parse the four files once per process (key: their paths, sizes and mtimes)."""
    files = {k: Path(p) for k, p, *_ in paths}
    arrays = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise CorruptDataError(f"{files[f'{split}_images']}: expected uint8 images (N, H, W), "
                                   f"got {x.dtype} {x.shape}; {_GOOD_COPY}")
        if y.ndim != 1 or len(y) != len(x):
            raise CorruptDataError(f"{files[f'{split}_labels']}: {len(y)} labels for {len(x)} images in "
                                   f"{files[f'{split}_images']}; {_GOOD_COPY}")
        if len(y) and y.max() >= len(CLASSES):
            raise CorruptDataError(f"{files[f'{split}_labels']}: label {y.max()} out of range; {_GOOD_COPY}")
    return arrays


def load_fashion_mnist(root=None, *, val_size: int = 5000, split_seed: int = 0,
                       download: bool = True, protocol: str = "report",
                       batch_size: int = DEEPOBS_BATCH_SIZE) -> FashionMNIST:
    """Load, split and standardise Fashion-MNIST.

    root:       folder with the four IDX files (raw or .gz); default FMNIST_DIR, then Debian's
                folder, then torchvision's download (see module docstring).
    val_size:   training images held out as the validation split (0 for none).
    split_seed: seed of the fixed permutation choosing the validation images.
    download:   allow the torchvision download as the last resort.
    protocol:   "report" (below) or "deepobs" (module docstring: /255 only, validation = the first
                ``val_size`` training images, val/test cut to whole batches of ``batch_size``;
                ``split_seed`` is unused).
    batch_size: deepobs only: the batch size whose whole batches of val/test are kept.
    Images become float32 (N, 1, 28, 28): uint8 / 255, then (x - mean) / std with the mean and
    std of the remaining training images. Labels are int64. Repeated calls are cheap: parsed files
    and splits are cached in-process, so the returned tensors are shared: treat them as read-only.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Invalid data_protocol: {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    files = locate(root, download=download)
    key = tuple((k, str(p), p.stat().st_size, p.stat().st_mtime_ns) for k, p in sorted(files.items()))
    if protocol == "deepobs":
        out = _split_deepobs(key, val_size, batch_size)
    else:
        out = _split(key, val_size, split_seed)
    return dataclasses.replace(out, source=str(files["train_images"].parent))


@functools.lru_cache(maxsize=2)
def _split_deepobs(key, val_size, batch_size):
    """DeepOBS's split (module docstring), cached: callers must treat the tensors as read-only."""
    arrays = _parse(key)
    x_all, y_all = arrays["train_images"], arrays["train_labels"]
    n = len(y_all)
    if not 0 < val_size < n:
        raise ValueError(f"Invalid val_size: {val_size} (must be in (0, {n}) for the deepobs protocol)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r} (must be an integer >= 1)")

    def whole_batches(m):      # drop_remainder=True: the images of complete batches only
        return m // batch_size * batch_size

    n_val = whole_batches(val_size)
    n_test = whole_batches(len(arrays["test_labels"]))
    if n_val == 0 or n_test == 0:
        raise ValueError(f"Invalid batch_size: {batch_size} (larger than the validation or test set)")

    def prep(u8):              # X.astype(np.float32) / 255.0, as DeepOBS's _read_mnist_data
        return torch.from_numpy(np.ascontiguousarray(u8)).to(torch.float32).div_(255.0).unsqueeze(1).contiguous()

    def lab(y):
        return torch.from_numpy(np.ascontiguousarray(y)).to(torch.int64)

    out = FashionMNIST(prep(x_all[val_size:]), lab(y_all[val_size:]),
                       prep(x_all[:n_val]), lab(y_all[:n_val]),
                       prep(arrays["test_images"][:n_test]), lab(arrays["test_labels"][:n_test]),
                       source="", mean=0.0, std=1.0, protocol="deepobs", batch_size=batch_size)
    for t in (out.train_x, out.val_x, out.test_x):
        t.requires_grad_(False)
    return out


@functools.lru_cache(maxsize=4)
def _split(key, val_size, split_seed):
    """The split, standardised tensors, cached: callers must treat them as read-only."""
    arrays = _parse(key)
    x_all, y_all = arrays["train_images"], arrays["train_labels"]
    n = len(y_all)
    if not 0 <= val_size < n:
        raise ValueError(f"Invalid val_size: {val_size} (must be in [0, {n}))")
    perm = np.random.default_rng(split_seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    train_u8 = x_all[train_idx]
    # Standardisation constants from the training split only (float64 for an exact sum).
    scaled = train_u8.astype(np.float64) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    del scaled

    def prep(u8):
        x = torch.from_numpy(np.ascontiguousarray(u8)).to(torch.float32).div_(255.0)
        return x.sub_(mean).div_(std).unsqueeze(1).contiguous()

    def lab(y):
        return torch.from_numpy(np.ascontiguousarray(y)).to(torch.int64)

    out = FashionMNIST(prep(train_u8), lab(y_all[train_idx]), prep(x_all[val_idx]), lab(y_all[val_idx]),
                       prep(arrays["test_images"]), lab(arrays["test_labels"]), source="", mean=mean, std=std)
    for t in (out.train_x, out.val_x, out.test_x):
        t.requires_grad_(False)
    return out
