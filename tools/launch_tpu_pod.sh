#!/usr/bin/env bash
# Launch jaxlvlm on every worker of a Cloud TPU pod slice: all workers run the same command.
#
#   tools/launch_tpu_pod.sh TPU_NAME ZONE [--project P] -- --config configs/x.py --workdir gs://bucket/run
#
# Steps: copies this checkout to every worker (rsync over `gcloud compute tpus tpu-vm scp`), installs
# it (pip install -e .) and starts `python -m jaxlvlm.main ARGS --config.distributed.enabled=True`
# on all workers at once. On a TPU pod jax.distributed.initialize() discovers the coordinator, the
# process count and ids itself, so no addresses are needed. The workdir must be shared storage
# (a gs:// bucket or an NFS path) so checkpoints from all hosts land in one place; rerunning the same
# command resumes from the latest checkpoint there.
#
# Environment: SKIP_INSTALL=1 skips the copy + install (already done); DRY_RUN=1 prints the commands.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  sed -n '2,14p' "$0"
  exit 2
fi
TPU_NAME=$1
ZONE=$2
shift 2
EXTRA_GCLOUD=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  EXTRA_GCLOUD+=("$1")
  shift
done
if [[ $# -eq 0 ]]; then
  echo "error: put the jaxlvlm arguments after '--'" >&2
  exit 2
fi
shift  # the '--'
ARGS=("$@")

REPO=$(cd "$(dirname "$0")/.." && pwd)
REMOTE_DIR=jaxlvlm
run() {
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}
on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${EXTRA_GCLOUD[@]}" \
    --worker=all --command "$1"
}

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  tarball=$(mktemp -t jaxlvlm.XXXXXX.tar.gz)
  tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=runs --exclude=workdirs -czf "$tarball" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:~/jaxlvlm.tar.gz" --zone "$ZONE" \
    "${EXTRA_GCLOUD[@]}" --worker=all
  on_all_workers "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/jaxlvlm.tar.gz -C ~/$REMOTE_DIR && \
cd ~/$REMOTE_DIR && pip install -q -e . 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
  rm -f "$tarball"
fi

quoted=$(printf '%q ' "${ARGS[@]}")
on_all_workers "cd ~/$REMOTE_DIR && python -m jaxlvlm.main $quoted --config.distributed.enabled=True"
