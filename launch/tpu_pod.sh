#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: ships the repository (git archive HEAD) to every worker, installs
# it with jax[tpu], starts the same `python -m jaxmoda.train` on all workers and follows worker 0's log.
#   bash launch/tpu_pod.sh --name my-v5p --zone us-east5-a --project my-proj --accelerator v5p-16 \
#       --create --config configs/d2it/imagenet256_xl.py --workdir /mnt/runs/xl -- --config.batch_size=256
# --dry-run prints the commands (each after "+ ") without running any; they are meant to be run from
# the repository root. See launch/README.md.
set -euo pipefail
unset CDPATH

usage() {
    cat <<'EOF'
usage: launch/tpu_pod.sh --name NAME --zone ZONE --project PROJECT --accelerator TYPE
                         --config CONFIG --workdir DIR [--version RUNTIME] [--create] [--spot]
                         [--dry-run] [-- TRAIN_ARGS...]

  --name NAME          TPU VM name (lowercase letters, digits, '-')
  --zone ZONE          zone of the TPU VM, e.g. us-east5-a
  --project PROJECT    Google Cloud project
  --accelerator TYPE   slice type, e.g. v5p-16, v5litepod-16, v6e-16, v4-32
  --version RUNTIME    TPU VM runtime (default from TYPE: v5p v2-alpha-tpuv5, v5litepod
                       v2-alpha-tpuv5-lite, v6e v2-alpha-tpuv6e, v2/v3/v4 tpu-ubuntu2204-base)
  --create             create the TPU VM if it does not exist
  --spot               with --create: create a Spot TPU VM (cheaper, preemptible)
  --config CONFIG      config file inside the repository, e.g. configs/d2it/imagenet256_xl.py
  --workdir DIR        absolute path that every worker sees (gcsfuse mount or NFS); not gs://
  --dry-run            print the commands, run nothing
  -- TRAIN_ARGS        passed on to python -m jaxmoda.train (e.g. --config.batch_size=256)

On each worker the code lives in ~/jaxmoda, the virtual environment in ~/jaxmoda-venv and the
training log in ~/jaxmoda-train.log. Ctrl-C stops following the log, not the run.
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/launch/lib.sh"

NAME='' ZONE='' PROJECT='' ACCEL='' VERSION='' CONFIG='' WORKDIR='' CREATE=0 SPOT=0 DRY_RUN=0
EXTRA=()
while (($#)); do
    opt=$1 val='' has_val=0
    if [[ $opt == --*=* ]]; then val=${opt#*=}; opt=${opt%%=*}; has_val=1; fi
    case $opt in
        -h|--help) usage; exit 0 ;;
        --create|--spot|--dry-run)
            ((has_val == 0)) || die "$opt takes no value"
            case $opt in --create) CREATE=1 ;; --spot) SPOT=1 ;; --dry-run) DRY_RUN=1 ;; esac
            shift; continue ;;
        --) shift; EXTRA=("$@"); break ;;
        --name|--zone|--project|--accelerator|--version|--config|--workdir)
            if ((has_val == 0)); then
                (($# >= 2)) || die "$opt needs a value"
                val=$2; shift
            fi
            shift
            case $opt in
                --name) NAME=$val ;; --zone) ZONE=$val ;; --project) PROJECT=$val ;;
                --accelerator) ACCEL=$val ;; --version) VERSION=$val ;;
                --config) CONFIG=$val ;; --workdir) WORKDIR=$val ;;
            esac ;;
        *) die "unknown argument '$1' (see --help; training options go after --)" ;;
    esac
done

[[ -n $NAME ]] || die "--name is required (see --help)"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name '$NAME' must be lowercase letters, digits and '-', starting with a letter"
[[ -n $ZONE ]] || die "--zone is required (see --help)"
[[ $ZONE =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] || die "--zone '$ZONE' is not a zone like us-east5-a"
[[ -n $PROJECT ]] || die "--project is required (see --help)"
[[ $PROJECT =~ ^[a-z][-a-z0-9.:]*[a-z0-9]$ ]] || die "--project '$PROJECT' is not a project id"
[[ -n $ACCEL ]] || die "--accelerator is required, e.g. v5p-16 (see --help)"
[[ $ACCEL =~ ^v[0-9][a-z0-9]*-[0-9]+$ ]] || die "--accelerator '$ACCEL' is not a slice type like v5p-16"
if [[ -z $VERSION ]]; then
    case $ACCEL in
        v2-*|v3-*|v4-*) VERSION=tpu-ubuntu2204-base ;;
        v5litepod-*|v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
        v5p-*) VERSION=v2-alpha-tpuv5 ;;
        v6e-*) VERSION=v2-alpha-tpuv6e ;;
        *) die "no default runtime for $ACCEL; pass --version (gcloud compute tpus tpu-vm versions list --zone $ZONE)" ;;
    esac
fi
[[ $VERSION =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "--version '$VERSION' is not a runtime version"
((SPOT == 0 || CREATE == 1)) || die "--spot only applies with --create"
[[ -n $CONFIG ]] || die "--config is required (see --help)"
[[ -n $WORKDIR ]] || die "--workdir is required (see --help)"
[[ $WORKDIR != gs://* ]] || die "--workdir $WORKDIR: mount the bucket with gcsfuse on every worker and pass the mount point (see launch/README.md)"
[[ $WORKDIR == /* ]] || die "--workdir '$WORKDIR' must be an absolute path that every worker sees (gcsfuse mount or NFS)"
CONFIG=$(resolve_config "$CONFIG" "the workers only get the repository") || exit 2
cd "$ROOT"
git rev-parse --verify -q HEAD >/dev/null 2>&1 || die "$ROOT is not a git checkout with a commit; the workers get the code through git archive HEAD"
git cat-file -e "HEAD:${CONFIG%%:*}" 2>/dev/null || die "config ${CONFIG%%:*} is not committed; the workers get the repository as of HEAD (git archive), so commit it first"
if [[ $DRY_RUN == 0 ]]; then
    command -v gcloud >/dev/null || die "gcloud not found; install the Google Cloud CLI (or use --dry-run)"
fi
if ! git diff --quiet HEAD -- jaxmoda configs setup.py 2>/dev/null; then
    printf 'warning: uncommitted changes under jaxmoda/, configs/ or setup.py are not shipped (git archive HEAD)\n' >&2
fi

WHERE=(--zone="$ZONE" --project="$PROJECT")
TARBALL=/tmp/jaxmoda-$NAME.tar.gz
# shellcheck disable=SC2088  # the worker's shell expands ~
LOG='~/jaxmoda-train.log'
TRAIN=(-m jaxmoda.train --config "$CONFIG" --workdir "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"})

# (a) Create the slice unless it exists.
if ((CREATE)); then
    describe=(gcloud compute tpus tpu-vm describe "$NAME" "${WHERE[@]}")
    create=(gcloud compute tpus tpu-vm create "$NAME" "${WHERE[@]}" --accelerator-type="$ACCEL" --version="$VERSION")
    ((SPOT == 0)) || create+=(--spot)
    printf '+ %s >/dev/null 2>&1 || %s\n' "$(words "${describe[@]}")" "$(words "${create[@]}")"
    if [[ $DRY_RUN == 0 ]]; then "${describe[@]}" >/dev/null 2>&1 || "${create[@]}"; fi
fi

# (b) Ship the committed tree and install it on every worker. jax>=0.10 needs Python >= 3.11 and the
# TPU images carry 3.10, so the venv gets a Python 3.12 through uv.
run git archive --format=tar.gz -o "$TARBALL" HEAD
run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:jaxmoda.tar.gz" "${WHERE[@]}" --worker=all
# shellcheck disable=SC2016  # these run on the worker, which expands them
SETUP='set -e; mkdir -p ~/jaxmoda; tar -xzf ~/jaxmoda.tar.gz -C ~/jaxmoda; export PATH="$HOME/.local/bin:$PATH"; '
SETUP+='command -v uv >/dev/null || python3 -m pip install -q --user uv || python3 -m pip install -q --user --break-system-packages uv; '
SETUP+='[ -x ~/jaxmoda-venv/bin/python ] || uv venv -q --python 3.12 ~/jaxmoda-venv; '
SETUP+='cd ~/jaxmoda; uv pip install -q --python ~/jaxmoda-venv/bin/python -e . "jax[tpu]"'
run gcloud compute tpus tpu-vm ssh "$NAME" "${WHERE[@]}" --worker=all --command "$SETUP"

# (c) Start training on all workers at once; jax.distributed finds the other workers by itself.
START="cd ~/jaxmoda && PYTHONUNBUFFERED=1 nohup ~/jaxmoda-venv/bin/python $(words "${TRAIN[@]}") > $LOG 2>&1 < /dev/null &"
run gcloud compute tpus tpu-vm ssh "$NAME" "${WHERE[@]}" --worker=all --command "$START"

# (d) Follow worker 0's log (process 0 writes metrics, samples and TensorBoard events).
run gcloud compute tpus tpu-vm ssh "$NAME" "${WHERE[@]}" --worker=0 --command "tail -n +1 -F $LOG"
