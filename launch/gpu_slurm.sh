#!/usr/bin/env bash
# Trains on GPU nodes under SLURM: one `python -m jaxmoda.train` per GPU (default) or per node, all
# joined through jax.distributed with the first node of the job as coordinator. Submit it from the
# repository root (on a filesystem every node sees), with the Python environment active:
#   sbatch --nodes=2 launch/gpu_slurm.sh --config configs/d2it/imagenet256_xl.py \
#       --workdir /shared/runs/xl -- --config.batch_size=256
# --dry-run prints the srun command (after "+ ") without running it; outside a job it reads the node
# list from SLURM_JOB_NODELIST if set. See launch/README.md.
#SBATCH --job-name=jaxmoda
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --output=jaxmoda-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=TERM@120
#SBATCH --requeue
set -euo pipefail
unset CDPATH

usage() {
    cat <<'EOF'
usage: sbatch [SBATCH_OPTIONS] launch/gpu_slurm.sh --config CONFIG --workdir DIR
                                [--port PORT] [--per gpu|node] [-- TRAIN_ARGS...]
       launch/gpu_slurm.sh --dry-run --config CONFIG --workdir DIR [...]

  --config CONFIG   config file, e.g. configs/d2it/imagenet256_xl.py
  --workdir DIR     run folder on a filesystem every node sees (NFS, Lustre, gcsfuse mount)
  --port PORT       coordinator port on the first node (default 12355)
  --per gpu|node    gpu: one process per GPU, one task per GPU (default; the job needs
                    --ntasks-per-node equal to the GPUs per node); node: one process per node
                    driving all of its GPUs
  --dry-run         print the srun command, run nothing
  -- TRAIN_ARGS     passed on to python -m jaxmoda.train (e.g. --config.batch_size=256)

The header asks for 1 node with 8 GPUs and 8 tasks; override on the sbatch command line
(--nodes, --gpus-per-node, --ntasks-per-node, --time, --partition, --account).
PYTHON (default: python) names the interpreter the tasks run.
EOF
}

# sbatch runs a copy of this script from its spool folder, so fall back to the submit folder.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
if [[ ! -f $ROOT/setup.py || ! -d $ROOT/jaxmoda ]]; then
    if [[ -n ${SLURM_SUBMIT_DIR:-} && -f $SLURM_SUBMIT_DIR/setup.py && -d $SLURM_SUBMIT_DIR/jaxmoda ]]; then
        ROOT=$(cd "$SLURM_SUBMIT_DIR" && pwd -P)
    else
        printf 'error: %s\n' "cannot find the jaxmoda repository; submit from its root (cd jaxmoda && sbatch launch/gpu_slurm.sh ...)" >&2
        exit 2
    fi
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/launch/lib.sh"

# First host of a SLURM node list; a plain comma-separated list needs no scontrol.
first_host() {
    local hosts
    if [[ $1 != *'['* ]]; then
        printf '%s' "${1%%,*}"
        return
    fi
    command -v scontrol >/dev/null 2>&1 || die "node list '$1' needs scontrol to expand"
    hosts=$(scontrol show hostnames "$1") || die "scontrol could not expand node list '$1'"
    printf '%s' "${hosts%%$'\n'*}"
}

CONFIG='' WORKDIR='' PORT=12355 PER=gpu DRY_RUN=0
EXTRA=()
while (($#)); do
    opt=$1 val='' has_val=0
    if [[ $opt == --*=* ]]; then val=${opt#*=}; opt=${opt%%=*}; has_val=1; fi
    case $opt in
        -h|--help) usage; exit 0 ;;
        --dry-run) ((has_val == 0)) || die "$opt takes no value"; DRY_RUN=1; shift; continue ;;
        --) shift; EXTRA=("$@"); break ;;
        --config|--workdir|--port|--per)
            if ((has_val == 0)); then
                (($# >= 2)) || die "$opt needs a value"
                val=$2; shift
            fi
            shift
            case $opt in
                --config) CONFIG=$val ;; --workdir) WORKDIR=$val ;; --port) PORT=$val ;; --per) PER=$val ;;
            esac ;;
        *) die "unknown argument '$1' (see --help; training options go after --)" ;;
    esac
done

[[ -n $CONFIG ]] || die "--config is required (see --help)"
[[ -n $WORKDIR ]] || die "--workdir is required (see --help)"
[[ $WORKDIR != gs://* ]] || die "--workdir $WORKDIR: mount the bucket with gcsfuse on every node and pass the mount point (see launch/README.md)"
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
    die "--port '$PORT' is not a port number (1-65535)"
fi
PORT=$((10#$PORT))
[[ $PER == gpu || $PER == node ]] || die "--per '$PER' must be gpu or node"
CONFIG=$(resolve_config "$CONFIG") || exit 2

if [[ -z ${SLURM_JOB_NODELIST:-} ]]; then
    [[ $DRY_RUN == 1 ]] || die "not inside a SLURM job (SLURM_JOB_NODELIST is unset); submit with sbatch, or pass --dry-run"
    SLURM_JOB_NODELIST=$(hostname)
    printf 'note: SLURM_JOB_NODELIST is unset; showing a one-node job on %s\n' "$SLURM_JOB_NODELIST" >&2
fi
[[ $DRY_RUN == 1 ]] || command -v srun >/dev/null || die "srun not found on this host"
COORDINATOR=$(first_host "$SLURM_JOB_NODELIST") || exit 2
[[ -n $COORDINATOR ]] || die "SLURM_JOB_NODELIST '$SLURM_JOB_NODELIST' names no host"
if [[ -n ${SLURM_JOB_NUM_NODES:-} ]]; then
    NNODES=$SLURM_JOB_NUM_NODES
elif [[ $SLURM_JOB_NODELIST != *'['* ]]; then
    IFS=, read -r -a _hosts <<<"$SLURM_JOB_NODELIST"
    NNODES=${#_hosts[@]}
else
    NNODES=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | wc -l)
fi
[[ $NNODES =~ ^[1-9][0-9]*$ ]] || die "SLURM_JOB_NUM_NODES '$NNODES' is not a positive integer"
NTASKS=${SLURM_NTASKS:-$((NNODES * 8))}
[[ $NTASKS =~ ^[1-9][0-9]*$ ]] || die "SLURM_NTASKS '$NTASKS' is not a positive integer"
PY=${PYTHON:-python}

# The task scripts are single-quoted: each task expands its own SLURM variables.
# shellcheck disable=SC2016
if [[ $PER == gpu ]]; then
    # One task per GPU: task i on a node drives that node's GPU i.
    NPROC=$NTASKS
    SRUN=(srun --ntasks="$NTASKS" --kill-on-bad-exit=1)
    DEVICES='export JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID'
else
    # One task per node driving all its GPUs (set explicitly: JAX would otherwise take one per task).
    NPROC=$NNODES
    SRUN=(srun --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1)
    DEVICES='export JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((${SLURM_GPUS_ON_NODE:-$(nvidia-smi --list-gpus | wc -l)} - 1)))'
fi
TRAIN=("$PY" -m jaxmoda.train --config "$CONFIG" --workdir "$WORKDIR"
       --config.distributed.coordinator_address="$COORDINATOR:$PORT"
       --config.distributed.num_processes="$NPROC")
# $SLURM_PROCID stays unexpanded here: each task substitutes its own rank.
TASK="$DEVICES; exec $(words "${TRAIN[@]}") --config.distributed.process_id=\$SLURM_PROCID"
((${#EXTRA[@]} == 0)) || TASK+=" $(words "${EXTRA[@]}")"

cd "$ROOT"
run "${SRUN[@]}" bash -c "$TASK"
