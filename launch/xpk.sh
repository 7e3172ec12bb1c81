#!/usr/bin/env bash
# Submits a training run to a GKE TPU cluster with xpk: every host of every slice runs the same
# `python -m jaxmoda.train` inside a Docker image that holds the repository (at /app by default).
#   bash launch/xpk.sh --cluster my-cluster --workload xl-run1 --tpu-type v5p-256 \
#       --docker-image us-docker.pkg.dev/my-proj/jaxmoda/jaxmoda:abc123 \
#       --config configs/d2it/imagenet256_xl.py --workdir /mnt/runs/xl -- --config.batch_size=1024
# --dry-run prints the command (after "+ ") without running it. See launch/README.md.
set -euo pipefail
unset CDPATH

usage() {
    cat <<'EOF'
usage: launch/xpk.sh --cluster CLUSTER --workload NAME --tpu-type TYPE --docker-image IMAGE
                     --config CONFIG --workdir DIR [--num-slices N] [--project PROJECT]
                     [--zone ZONE] [--repo-dir DIR] [--max-restarts N] [--grace-seconds S]
                     [--dry-run] [-- TRAIN_ARGS...]

  --cluster CLUSTER    GKE cluster made with `xpk cluster create`
  --workload NAME      workload name: lowercase letters, digits, '-', at most 40 characters
  --tpu-type TYPE      slice type, e.g. v5p-256, v5litepod-256, v6e-256
  --num-slices N       number of slices (default 1)
  --docker-image IMAGE image with the repository and jaxmoda + jax[tpu] installed
  --repo-dir DIR       where the repository is inside the image (default /app)
  --config CONFIG      config file inside the repository, e.g. configs/d2it/imagenet256_xl.py
  --workdir DIR        absolute path mounted in every pod (xpk storage attach, gcsfuse or
                       Filestore); not gs://
  --project PROJECT    Google Cloud project (default: gcloud's configured project)
  --zone ZONE          zone of the cluster (default: gcloud's configured zone)
  --max-restarts N     times JobSet restarts the workload after a failure (default 3); a
                       restarted workload resumes from the workdir
  --grace-seconds S    time a pod gets after SIGTERM to save its checkpoint (default 300)
  --dry-run            print the command, run nothing
  -- TRAIN_ARGS        passed on to python -m jaxmoda.train (e.g. --config.batch_size=1024)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/launch/lib.sh"

CLUSTER='' WORKLOAD='' TPU_TYPE='' NUM_SLICES=1 IMAGE='' REPO_DIR=/app CONFIG='' WORKDIR=''
PROJECT='' ZONE='' MAX_RESTARTS=3 GRACE=300 DRY_RUN=0
EXTRA=()
while (($#)); do
    opt=$1 val='' has_val=0
    if [[ $opt == --*=* ]]; then val=${opt#*=}; opt=${opt%%=*}; has_val=1; fi
    case $opt in
        -h|--help) usage; exit 0 ;;
        --dry-run) ((has_val == 0)) || die "$opt takes no value"; DRY_RUN=1; shift; continue ;;
        --) shift; EXTRA=("$@"); break ;;
        --cluster|--workload|--tpu-type|--num-slices|--docker-image|--repo-dir|--config|--workdir|--project|--zone|--max-restarts|--grace-seconds)
            if ((has_val == 0)); then
                (($# >= 2)) || die "$opt needs a value"
                val=$2; shift
            fi
            shift
            case $opt in
                --cluster) CLUSTER=$val ;; --workload) WORKLOAD=$val ;; --tpu-type) TPU_TYPE=$val ;;
                --num-slices) NUM_SLICES=$val ;; --docker-image) IMAGE=$val ;; --repo-dir) REPO_DIR=$val ;;
                --config) CONFIG=$val ;; --workdir) WORKDIR=$val ;; --project) PROJECT=$val ;;
                --zone) ZONE=$val ;; --max-restarts) MAX_RESTARTS=$val ;; --grace-seconds) GRACE=$val ;;
            esac ;;
        *) die "unknown argument '$1' (see --help; training options go after --)" ;;
    esac
done

[[ -n $CLUSTER ]] || die "--cluster is required (see --help)"
[[ $CLUSTER =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--cluster '$CLUSTER' must be lowercase letters, digits and '-'"
[[ -n $WORKLOAD ]] || die "--workload is required (see --help)"
[[ $WORKLOAD =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ && ${#WORKLOAD} -le 40 ]] \
    || die "--workload '$WORKLOAD' must be lowercase letters, digits and '-', starting with a letter, at most 40 characters"
[[ -n $TPU_TYPE ]] || die "--tpu-type is required, e.g. v5p-256 (see --help)"
[[ $TPU_TYPE =~ ^v[0-9][a-z0-9]*-[0-9]+$ ]] || die "--tpu-type '$TPU_TYPE' is not a slice type like v5p-256"
[[ $NUM_SLICES =~ ^[1-9][0-9]*$ ]] || die "--num-slices '$NUM_SLICES' is not a positive integer"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max-restarts '$MAX_RESTARTS' is not a non-negative integer"
[[ $GRACE =~ ^[0-9]+$ ]] || die "--grace-seconds '$GRACE' is not a non-negative integer"
[[ -n $IMAGE ]] || die "--docker-image is required (see --help and launch/README.md for building one)"
[[ $IMAGE =~ ^[A-Za-z0-9][-A-Za-z0-9_./:@]*$ ]] || die "--docker-image '$IMAGE' is not an image reference"
[[ $REPO_DIR == /* ]] || die "--repo-dir '$REPO_DIR' must be an absolute path inside the image"
[[ -z $PROJECT || $PROJECT =~ ^[a-z][-a-z0-9.:]*[a-z0-9]$ ]] || die "--project '$PROJECT' is not a project id"
[[ -z $ZONE || $ZONE =~ ^[a-z]+-[a-z]+[0-9]+(-[a-z])?$ ]] || die "--zone '$ZONE' is not a zone like us-east5-a"
[[ -n $CONFIG ]] || die "--config is required (see --help)"
[[ -n $WORKDIR ]] || die "--workdir is required (see --help)"
[[ $WORKDIR != gs://* ]] || die "--workdir $WORKDIR: mount the bucket in the pods (xpk storage attach --type=gcsfuse) and pass the mount point (see launch/README.md)"
[[ $WORKDIR == /* ]] || die "--workdir '$WORKDIR' must be an absolute path mounted in every pod"
CONFIG=$(resolve_config "$CONFIG" "the image only holds the repository") || exit 2
if [[ $DRY_RUN == 0 ]]; then
    command -v xpk >/dev/null || die "xpk not found; pip install xpk (or use --dry-run)"
fi

TRAIN=(python -m jaxmoda.train --config "$CONFIG" --workdir "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"})
COMMAND="cd $(q "$REPO_DIR") && PYTHONUNBUFFERED=1 $(words "${TRAIN[@]}")"
XPK=(xpk workload create --cluster "$CLUSTER" --workload "$WORKLOAD" --tpu-type "$TPU_TYPE" --num-slices "$NUM_SLICES")
[[ -z $PROJECT ]] || XPK+=(--project "$PROJECT")
[[ -z $ZONE ]] || XPK+=(--zone "$ZONE")
XPK+=(--docker-image "$IMAGE" --max-restarts "$MAX_RESTARTS" --termination-grace-period-seconds "$GRACE" --command "$COMMAND")
run "${XPK[@]}"

# How to follow the run (xpk leaves kubectl pointed at the cluster).
LIST=(xpk workload list --cluster "$CLUSTER" --filter-by-job "$WORKLOAD")
[[ -z $PROJECT ]] || LIST+=(--project "$PROJECT")
[[ -z $ZONE ]] || LIST+=(--zone "$ZONE")
cat <<EOF
# status:            $(words "${LIST[@]}")
# pods:              $(words kubectl get pods -l "jobset.sigs.k8s.io/jobset-name=$WORKLOAD")
# worker 0's log:    $(words kubectl logs -f --tail=100 -l "jobset.sigs.k8s.io/jobset-name=$WORKLOAD,jobset.sigs.k8s.io/job-index=0,batch.kubernetes.io/job-completion-index=0")
# stop:              $(words xpk workload delete --cluster "$CLUSTER" --workload "$WORKLOAD")
EOF
