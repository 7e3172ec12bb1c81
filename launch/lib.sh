# shellcheck shell=bash
# Shared by the launch scripts (sourced, not run): errors, shell quoting, printing and running
# commands, and resolving --config inside the repository. The caller sets ROOT (the repository root)
# and DRY_RUN before using `run` or `resolve_config`.

die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Quotes one word for the shell; plain words stay as they are.
q() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+^-]+$ ]]; then
        printf '%s' "$1"
    else
        local s=${1//"'"/"'\\''"}
        printf "'%s'" "$s"
    fi
}
words() { local out='' w; for w in "$@"; do out+="${out:+ }$(q "$w")"; done; printf '%s' "$out"; }
# Prints a command (after "+ ") and runs it unless --dry-run.
run() { printf '+ %s\n' "$(words "$@")"; [[ $DRY_RUN == 1 ]] || "$@"; }

# resolve_config CONFIG [WHY]: prints CONFIG relative to the repository root (a ':arg' suffix kept);
# exits 2 when it is not a file. A config outside the repository is refused with WHY when WHY is
# given (the hosts only get the repository), else printed as an absolute path.
resolve_config() {
    local file=${1%%:*} suffix dir abs
    suffix=${1#"$file"}
    [[ -n $file ]] || die "--config is empty"
    if [[ $file != /* && ! -f $file && -f $ROOT/$file ]]; then file=$ROOT/$file; fi
    [[ -f $file ]] || die "config file ${1%%:*} does not exist (pass a file in the repository, e.g. configs/dit/tiny.py)"
    dir=$(cd "$(dirname "$file")" && pwd -P)
    abs=$dir/$(basename "$file")
    if [[ $abs == "$ROOT"/* ]]; then
        abs=${abs#"$ROOT"/}
    elif [[ -n ${2:-} ]]; then
        die "config $file is outside the repository $ROOT; $2"
    fi
    printf '%s%s' "$abs" "$suffix"
}
