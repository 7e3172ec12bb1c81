"""The cluster launch scripts (launch/*.sh): --dry-run output against golden files, the printed
commands run as printed (through stand-ins for gcloud, xpk, srun and python), argument checks.

Regenerate the golden files with `UPDATE_GOLDEN=1 python -m pytest tests/test_launch.py`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
SCRIPTS = ("tpu_pod.sh", "xpk.sh", "gpu_slurm.sh")
CONFIG = "configs/d2it/imagenet256_xl.py"
SLURM_ENV = {"SLURM_JOB_NODELIST": "gpu-a01,gpu-a02", "SLURM_NTASKS": "16", "SLURM_JOB_NUM_NODES": "2"}
# Arguments that a naive quoting would split or expand.
TRICKY = ["--config.batch_size=256", "--config.name=it's a \"run\" $HOME `id` ;&|", "--config.note="]

# Minimal valid arguments of each script, without --config/--workdir.
BASE = {
    "tpu_pod.sh": ["--name", "my-v5p", "--zone", "us-east5-a", "--project", "my-proj", "--accelerator", "v5p-16"],
    "xpk.sh": ["--cluster", "my-cluster", "--workload", "xl-run1", "--tpu-type", "v5p-256",
               "--docker-image", "us-docker.pkg.dev/my-proj/jaxmoda/jaxmoda:abc123"],
    "gpu_slurm.sh": [],
}
WORKDIR = {"tpu_pod.sh": "/mnt/runs/xl", "xpk.sh": "/mnt/runs/xl", "gpu_slurm.sh": "/shared/runs/xl"}

# name -> (script, arguments after the config/workdir, extra environment)
CASES = {
    "tpu_pod_dry_run": ("tpu_pod.sh", ["--create", "--", "--config.batch_size=256"], {}),
    "xpk_dry_run": ("xpk.sh", ["--num-slices", "2", "--", "--config.batch_size=1024"], {}),
    "gpu_slurm_dry_run": ("gpu_slurm.sh", ["--", "--config.batch_size=256"], SLURM_ENV),
    "gpu_slurm_per_node_dry_run": ("gpu_slurm.sh", ["--per", "node", "--port", "23456"], SLURM_ENV),
}

STUB_TOOL = "#!/bin/sh\necho \"$(basename \"$0\") must not run in these tests\" >&2\nexit 97\n"
# gcloud/xpk stand-ins that run what --command holds; srun runs its command once for the task in the env.
RUN_COMMAND = ('#!/usr/bin/env bash\nwhile (($#)); do\n    if [[ $1 == --command ]]; then exec bash -c "$2"; fi\n'
               '    shift\ndone\nexit 98\n')
SRUN = '#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n'
# A python stand-in that records its arguments, one per line, and the devices it was given.
FAKE_PYTHON = ('#!/bin/sh\n{ echo "JAX_LOCAL_DEVICE_IDS=${JAX_LOCAL_DEVICE_IDS-}"; echo "PWD=$PWD"; '
               'printf "%s\\n" "$@"; } > "$ARGS_OUT.tmp" && mv "$ARGS_OUT.tmp" "$ARGS_OUT"\n')


def _write_exe(path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path):
    """A working directory outside the repo, a fresh HOME, and a bin/ where every cluster tool fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "xpk", "srun", "sbatch", "scontrol", "kubectl"):
        _write_exe(bin_dir / tool, STUB_TOOL)
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    return tmp_path


def _env(sandbox, extra: dict | None = None) -> dict:
    env = {"PATH": f"{sandbox / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HOME": str(sandbox / "home"), "LC_ALL": "C"}
    env.update(extra or {})
    return env


def _run(script: str, args: list[str], sandbox, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], check=False,
                          cwd=cwd or sandbox / "cwd", env=_env(sandbox, env), capture_output=True, text=True,
                          timeout=30)


def _shell(printed: str, env: dict, cwd) -> subprocess.CompletedProcess:
    """Runs one printed '+ ' line with bash, as a user pasting it would."""
    assert printed.startswith("+ "), printed
    return subprocess.run(["bash", "-c", printed[2:]], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30)


def _args(script: str, tail: list[str], config: str = CONFIG) -> list[str]:
    return [*BASE[script], "--config", config, "--workdir", WORKDIR[script], "--dry-run", *tail]


def _lines(stdout: str, prefix: str = "+ ") -> list[list[str]]:
    """The printed commands, each split into words as the shell would."""
    return [shlex.split(line[len(prefix):]) for line in stdout.splitlines() if line.startswith(prefix)]


def _inner(words: list[str], flag: str) -> list[str]:
    """The words of the shell command passed as the value of `flag` (--command, or bash's -c)."""
    return shlex.split(words[words.index(flag) + 1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_dry_run_matches_golden(name, sandbox):
    script, tail, env = CASES[name]
    here = _run(script, _args(script, tail), sandbox, env)
    assert here.returncode == 0, here.stderr
    # The same output from the repo root with an absolute config path: nothing depends on where it ran.
    at_root = _run(script, _args(script, tail, os.path.join(ROOT, CONFIG)), sandbox, env, cwd=ROOT)
    assert at_root.returncode == 0, at_root.stderr
    assert at_root.stdout == here.stdout
    path = os.path.join(GOLDEN, f"{name}.txt")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            f.write(here.stdout)
    with open(path) as f:
        assert here.stdout == f.read(), f"{name}: rerun with UPDATE_GOLDEN=1 if the change is intended"


def test_tpu_pod_commands(sandbox):
    r = _run("tpu_pod.sh", _args("tpu_pod.sh", ["--create", "--spot", "--", *TRICKY]), sandbox)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("+ gcloud compute tpus tpu-vm describe my-v5p ")
    assert "|| gcloud compute tpus tpu-vm create my-v5p " in r.stdout and "--spot" in r.stdout
    cmds = _lines(r.stdout)
    assert cmds[1] == ["git", "archive", "--format=tar.gz", "-o", "/tmp/jaxmoda-my-v5p.tar.gz", "HEAD"]
    assert cmds[2][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in cmds[2]
    setup, start, follow = cmds[3], cmds[4], cmds[5]
    assert "--worker=all" in setup and "jax[tpu]" in setup[-1]
    assert "--worker=all" in start
    train = _inner(start, "--command")
    i = train.index("jaxmoda.train")
    assert train[i + 1:i + 5] == ["--config", CONFIG, "--workdir", "/mnt/runs/xl"]
    assert train[i + 5:i + 5 + len(TRICKY)] == TRICKY
    assert "--worker=0" in follow and "tail" in follow[-1]
    # Without --create nothing is created.
    r = _run("tpu_pod.sh", _args("tpu_pod.sh", []), sandbox)
    assert r.returncode == 0 and "tpu-vm create" not in r.stdout and "describe" not in r.stdout


def test_tpu_pod_start_command_runs_as_printed(sandbox):
    """The printed start line, run by a shell with a gcloud that runs --command here, starts python
    in ~/jaxmoda with exactly the given arguments."""
    r = _run("tpu_pod.sh", _args("tpu_pod.sh", ["--", *TRICKY]), sandbox)
    start = next(line for line in r.stdout.splitlines() if "nohup" in line)
    home = sandbox / "home"
    (home / "jaxmoda").mkdir()
    (home / "jaxmoda-venv" / "bin").mkdir(parents=True)
    _write_exe(home / "jaxmoda-venv" / "bin" / "python", FAKE_PYTHON)
    _write_exe(sandbox / "bin" / "gcloud", RUN_COMMAND)
    out = sandbox / "args.txt"
    p = _shell(start, _env(sandbox, {"ARGS_OUT": str(out)}), sandbox / "cwd")
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 10  # python runs in the background under nohup
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    got = out.read_text().splitlines()
    assert got[1] == f"PWD={home / 'jaxmoda'}"
    assert got[2:] == ["-m", "jaxmoda.train", "--config", CONFIG, "--workdir", "/mnt/runs/xl", *TRICKY]
    assert (home / "jaxmoda-train.log").exists()


def test_xpk_commands(sandbox):
    r = _run("xpk.sh", _args("xpk.sh", ["--project", "my-proj", "--", *TRICKY]), sandbox)
    assert r.returncode == 0, r.stderr
    cmds = _lines(r.stdout)
    assert len(cmds) == 1 and cmds[0][:3] == ["xpk", "workload", "create"]
    create = cmds[0]
    for flag, value in [("--cluster", "my-cluster"), ("--workload", "xl-run1"), ("--tpu-type", "v5p-256"),
                        ("--num-slices", "1"), ("--project", "my-proj")]:
        assert create[create.index(flag) + 1] == value
    train = _inner(create, "--command")
    i = train.index("jaxmoda.train")
    assert train[:3] == ["cd", "/app", "&&"]
    assert train[i + 1:] == ["--config", CONFIG, "--workdir", "/mnt/runs/xl", *TRICKY]
    assert "xpk workload list --cluster my-cluster --filter-by-job xl-run1" in r.stdout
    assert "kubectl logs" in r.stdout


def test_xpk_command_runs_as_printed(sandbox):
    repo = sandbox / "image-app"
    repo.mkdir()
    r = _run("xpk.sh", _args("xpk.sh", ["--repo-dir", str(repo), "--", *TRICKY]), sandbox)
    _write_exe(sandbox / "bin" / "xpk", RUN_COMMAND)
    _write_exe(sandbox / "bin" / "python", FAKE_PYTHON)
    out = sandbox / "args.txt"
    p = _shell(r.stdout.splitlines()[0], _env(sandbox, {"ARGS_OUT": str(out)}), sandbox / "cwd")
    assert p.returncode == 0, p.stderr
    got = out.read_text().splitlines()
    assert got[1] == f"PWD={repo}"
    assert got[2:] == ["-m", "jaxmoda.train", "--config", CONFIG, "--workdir", "/mnt/runs/xl", *TRICKY]


def test_gpu_slurm_commands(sandbox):
    r = _run("gpu_slurm.sh", _args("gpu_slurm.sh", ["--", *TRICKY]), sandbox, SLURM_ENV)
    assert r.returncode == 0, r.stderr
    (srun,) = _lines(r.stdout)
    assert srun[0] == "srun" and "--ntasks=16" in srun
    task = srun[srun.index("-c") + 1]
    assert "export JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID;" in task
    train = _inner(srun, "-c")
    i = train.index("jaxmoda.train")
    assert train[i + 1:i + 5] == ["--config", CONFIG, "--workdir", "/shared/runs/xl"]
    assert "--config.distributed.coordinator_address=gpu-a01:12355" in train
    assert "--config.distributed.num_processes=16" in train
    assert "--config.distributed.process_id=$SLURM_PROCID" in train  # left for each task to expand
    assert train[-len(TRICKY):] == TRICKY
    # One process per node: as many processes as nodes, one task on each.
    r = _run("gpu_slurm.sh", _args("gpu_slurm.sh", ["--per", "node"]), sandbox, SLURM_ENV)
    (srun,) = _lines(r.stdout)
    assert "--ntasks=2" in srun and "--ntasks-per-node=1" in srun
    assert "--config.distributed.num_processes=2" in srun[-1]


def test_gpu_slurm_expands_node_list_with_scontrol(sandbox):
    _write_exe(sandbox / "bin" / "scontrol", '#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 1\n'
                                             'printf "gpu-b07\\ngpu-b08\\n"\n')
    env = {"SLURM_JOB_NODELIST": "gpu-b[07-08]", "SLURM_NTASKS": "16"}
    r = _run("gpu_slurm.sh", _args("gpu_slurm.sh", ["--per", "node"]), sandbox, env)
    assert r.returncode == 0, r.stderr
    assert "--config.distributed.coordinator_address=gpu-b07:12355" in r.stdout
    assert "--config.distributed.num_processes=2" in r.stdout


def test_gpu_slurm_each_task_gets_its_own_rank(sandbox):
    """The printed srun line, run with a srun that starts the task here, hands the task's own
    SLURM_PROCID and SLURM_LOCALID to jaxmoda.train."""
    r = _run("gpu_slurm.sh", _args("gpu_slurm.sh", ["--", *TRICKY]), sandbox, SLURM_ENV)
    _write_exe(sandbox / "bin" / "srun", SRUN)
    _write_exe(sandbox / "bin" / "python", FAKE_PYTHON)
    out = sandbox / "args.txt"
    env = _env(sandbox, {"ARGS_OUT": str(out), "SLURM_PROCID": "11", "SLURM_LOCALID": "3"})
    p = _shell(r.stdout.splitlines()[0], env, ROOT)
    assert p.returncode == 0, p.stderr
    got = out.read_text().splitlines()
    assert got[0] == "JAX_LOCAL_DEVICE_IDS=3"
    assert got[2:] == ["-m", "jaxmoda.train", "--config", CONFIG, "--workdir", "/shared/runs/xl",
                       "--config.distributed.coordinator_address=gpu-a01:12355",
                       "--config.distributed.num_processes=16", "--config.distributed.process_id=11", *TRICKY]


def _refused(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_workdir_is_refused(script, sandbox):
    env = SLURM_ENV if script == "gpu_slurm.sh" else {}
    _refused(_run(script, [*BASE[script], "--config", CONFIG, "--dry-run"], sandbox, env), "--workdir")


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_config_file_is_refused(script, sandbox):
    env = SLURM_ENV if script == "gpu_slurm.sh" else {}
    args = [*BASE[script], "--config", "configs/no_such.py", "--workdir", WORKDIR[script], "--dry-run"]
    _refused(_run(script, args, sandbox, env), "configs/no_such.py")


@pytest.mark.parametrize("script,args,words", [
    ("tpu_pod.sh", ["--config", CONFIG, "--workdir", "/mnt/runs/xl"], ["--name"]),
    ("tpu_pod.sh", [*BASE["tpu_pod.sh"], "--config", CONFIG, "--workdir", "gs://b/xl"], ["gcsfuse"]),
    ("tpu_pod.sh", [*BASE["tpu_pod.sh"], "--config", CONFIG, "--workdir", "runs/xl"], ["absolute"]),
    ("tpu_pod.sh", [*BASE["tpu_pod.sh"][:-1], "v5p", "--config", CONFIG, "--workdir", "/w"], ["--accelerator"]),
    ("tpu_pod.sh", [*BASE["tpu_pod.sh"], "--config", CONFIG, "--workdir"], ["--workdir needs a value"]),
    ("xpk.sh", [*BASE["xpk.sh"], "--num-slices", "0", "--config", CONFIG, "--workdir", "/w"], ["--num-slices"]),
    ("xpk.sh", [*BASE["xpk.sh"][:2], "--workload", "Bad_Name", *BASE["xpk.sh"][4:], "--config", CONFIG,
                "--workdir", "/w"], ["--workload"]),
    ("gpu_slurm.sh", ["--config", CONFIG, "--workdir", "/w", "--per", "socket"], ["--per"]),
    ("gpu_slurm.sh", ["--config", CONFIG, "--workdir", "/w", "--port", "70000"], ["--port"]),
    ("gpu_slurm.sh", ["--config", CONFIG, "--workdir", "/w", "--bogus"], ["--bogus"]),
])
def test_bad_arguments_are_refused(script, args, words, sandbox):
    env = SLURM_ENV if script == "gpu_slurm.sh" else {}
    _refused(_run(script, ["--dry-run", *args], sandbox, env), *words)


def test_gpu_slurm_outside_a_job_needs_dry_run(sandbox):
    _refused(_run("gpu_slurm.sh", ["--config", CONFIG, "--workdir", "/w"], sandbox), "sbatch")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, sandbox):
    r = _run(script, ["--help"], sandbox)
    assert r.returncode == 0 and r.stdout.startswith("usage:") and "--dry-run" in r.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax(script):
    path = os.path.join(ROOT, "launch", script)
    r = subprocess.run(["bash", "-n", path], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        # -x: also check launch/lib.sh, which every script sources
        r = subprocess.run(["shellcheck", "-x", path], check=False, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
