"""STS Benchmark (Cer et al. 2017, SemEval-2017 Task 1): sentence pairs with a gold similarity in [0, 5].

Source: the canonical ``Stsbenchmark.tar.gz`` (sts-train / sts-dev / sts-test, 5749 / 1500 / 1379 pairs),
pinned by sha256 and found like every raw file (genbench.data.sources): a local folder
(``data.datasets.stsbenchmark.local_dir`` or ``$GENBENCH_DATA_DIR/stsbenchmark``), else the download cache,
else the STS wiki's address. Each csv line is tab-separated: genre, file, year, id, score, sentence 1,
sentence 2, and on some lines the pair's source corpora (ignored); there is no quoting.

Prepared (``prepare``): train / val / test are the official train / dev / test files, in their order, each
an npz of ``x`` (uint8, N x 2 x L: the two sentences as zero-padded UTF-8) and ``y`` (float32 gold scores),
checked by sha256 like every prepared split; ``load_pairs`` gives the sentences back as text.
"""
from __future__ import annotations

import io
import tarfile

import numpy as np

from genbench import GenbenchError
from genbench.data.base import LoadRequest, RawData
from genbench.data.sources import RawFile, Source, resolve

ARCHIVE = RawFile("Stsbenchmark.tar.gz", sha256="557a86abbd2b76ee6768d8b5103b659601a9d26b797898c7467812f303b21280")
SOURCE = Source("stsbenchmark", ((ARCHIVE,),), base_url="http://ixa2.si.ehu.eus/stswiki/images/4/48/")
MEMBERS = {"train": "stsbenchmark/sts-train.csv", "dev": "stsbenchmark/sts-dev.csv",
           "test": "stsbenchmark/sts-test.csv"}
OFFICIAL_SIZES = {"train": 5749, "dev": 1500, "test": 1379}


def parse(text: str, name: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(pairs, gold scores) of one STS-B csv file."""
    pairs, gold = [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 7:
            raise GenbenchError(f"{name} line {number}: expected at least 7 tab-separated fields, got {len(fields)}")
        pairs.append((fields[5], fields[6]))
        gold.append(float(fields[4]))
    return pairs, np.asarray(gold, dtype=np.float32)


def read_archive(path) -> dict[str, tuple[list[tuple[str, str]], np.ndarray]]:
    """Every split's pairs and gold scores from the archive."""
    with tarfile.open(path, "r:gz") as archive:
        out = {}
        for split, member in MEMBERS.items():
            handle = archive.extractfile(member)
            if handle is None:
                raise GenbenchError(f"{path} lacks {member}; is it the canonical Stsbenchmark.tar.gz?")
            out[split] = parse(io.TextIOWrapper(handle, encoding="utf-8").read(), member)
    for split, (pairs, _) in out.items():
        if len(pairs) != OFFICIAL_SIZES[split]:
            raise GenbenchError(f"{MEMBERS[split]} has {len(pairs)} pairs, the benchmark has {OFFICIAL_SIZES[split]}")
    return out


def encode_pairs(pairs: list[tuple[str, str]]) -> np.ndarray:
    """N x 2 x L uint8: each sentence's UTF-8 bytes, zero-padded (no sentence contains a NUL byte)."""
    encoded = [[s.encode("utf-8") for s in pair] for pair in pairs]
    width = max((len(b) for pair in encoded for b in pair), default=1)
    out = np.zeros((len(pairs), 2, width), dtype=np.uint8)
    for i, pair in enumerate(encoded):
        for j, b in enumerate(pair):
            out[i, j, :len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def decode_pairs(x) -> list[tuple[str, str]]:
    array = np.asarray(x, dtype=np.uint8)
    return [tuple(bytes(row).rstrip(b"\0").decode("utf-8") for row in pair) for pair in array]


def load(request: LoadRequest) -> RawData:
    """The official train (x_train) and dev + test (x_test, dev first) pairs; prepare splits them by name."""
    found = resolve(SOURCE, local_dir=request.local_dir, allow_download=request.allow_download)
    splits = read_archive(found.paths[ARCHIVE.name])
    provenance = {**found.manifest(), "splits": {k: len(v[0]) for k, v in splits.items()}}
    (train, y_train), (dev, y_dev), (test, y_test) = splits["train"], splits["dev"], splits["test"]
    return RawData(encode_pairs(train), y_train, encode_pairs(dev + test), np.concatenate([y_dev, y_test]),
                   provenance)
