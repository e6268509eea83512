"""Re-key dvc.lock's pipelines/resolved/* dependencies to the files on disk, for a change shown not to move
any figure (how the source hashes are computed, a new setting's default written out, code that no existing
job runs). Stages listed in pipelines/stale.yaml keep their old keys (they await a re-run); lock entries of
stages dvc.yaml no longer defines are dropped. Say in the commit why no figure can move.

    genbench resolve && python scripts/relock.py
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml
from ruamel.yaml import YAML


def main() -> int:
    stale = yaml.safe_load(Path("pipelines/stale.yaml").read_text()) or {} if Path("pipelines/stale.yaml").is_file() else {}
    kept_stale = {stage for entry in stale.values() for stage in entry["stages"]}
    names = set(subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True,
                               check=True).stdout.split())
    io = YAML()
    io.width = 4096
    lock = io.load(Path("dvc.lock").read_text())
    rekeyed = dropped = 0
    for name in list(lock["stages"]):
        if name not in names:
            del lock["stages"][name]
            dropped += 1
            continue
        if name in kept_stale:
            continue
        for dep in lock["stages"][name].get("deps", []):
            path = Path(dep["path"])
            if str(path).startswith("pipelines/resolved/") and path.is_file():
                data = path.read_bytes()
                md5 = hashlib.md5(data).hexdigest()
                if dep.get("md5") != md5:
                    dep["md5"], dep["size"] = md5, len(data)
                    rekeyed += 1
    with open("dvc.lock", "w") as handle:
        io.dump(lock, handle)
    print(f"relock: {rekeyed} resolved dependencies re-keyed, {dropped} stale lock entries dropped, "
          f"{len(kept_stale)} listed stale stages left as they were")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
