# Sourced by the README's commands (scripts/run.sh, scripts/test.sh) and CI: the environment they share.
# Datasets that no package registry ships (STS-B) are looked for in the workplace's shared data folder,
# ../shared/data beside the project, as $GENBENCH_DATA_DIR/<dataset>, unless GENBENCH_DATA_DIR is set already.
if [ -z "${GENBENCH_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  GENBENCH_DATA_DIR="$(cd ../shared/data && pwd)"
  export GENBENCH_DATA_DIR
fi
