"""python -m jaxmoda.plan: the ahead-of-time fit check on fake devices."""

import json

import jax
import pytest

from jaxmoda import plan as plan_cli
from jaxmoda.config import load_config
from jaxmoda.errors import ConfigError
from tests.helpers import TINY, override_args


def test_xl_state_splits_evenly_over_eight_fsdp_devices():
    config = load_config("configs/d2it/imagenet256_xl.py", [("mesh.data", "1"), ("mesh.fsdp", "8")])
    report = plan_cli.plan(config, jax.devices()[:8], compile_step=False, count_flops=False)
    assert report["params"] > 600e6 and report["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    per = report["per_device_bytes"]
    assert abs(per["state"] / (report["state_bytes_total"] / 8) - 1) < 0.05
    assert per["optimizer"] == pytest.approx(2 * per["params"], rel=0.01)  # Adam's two moments, f32
    assert per["state"] >= per["params"] + per["optimizer"] + per["ema"]


def test_cli_compiles_the_step_and_reports_memory_flops_and_time(capsys):
    args = ["--config", TINY, "--mesh", "data=2,fsdp=4", "--peak-tflops", "100", "--mfu", "0.5", "--hbm-gib", "16",
            "--json", *override_args()]
    assert plan_cli.main(args) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["devices"] == 8 and r["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    m = r["compiled_memory_per_device"]
    assert m["argument_bytes"] >= r["per_device_bytes"]["state"] and m["peak_bytes"] > m["argument_bytes"] // 2
    assert r["fits"] is True and r["flops_per_step"] > 0
    assert r["est_step_time_s"] == pytest.approx(r["flops_per_step"] / (8 * 100e12 * 0.5))
    # fsdp=4 with data=2: every array is split four ways at most, so a device holds at least total/4.
    assert r["per_device_bytes"]["state"] >= r["state_bytes_total"] / 4


@pytest.mark.parametrize("mesh,needle", [("data=3,fsdp=4", "needs 12 devices"), ("data=2,model=4", "AXIS=SIZE"),
                                         ("data=0", "AXIS=SIZE")])
def test_bad_meshes_are_one_clear_error(mesh, needle):
    with pytest.raises(ConfigError, match=needle):
        plan_cli.main(["--config", TINY, "--mesh", mesh, *override_args()])


def test_bench_all_writes_one_json_with_every_figure(tmp_path, monkeypatch):
    from jaxmoda import bench, bench_suite
    monkeypatch.setitem(bench_suite.SUITES, "tiny", [TINY, "configs/does/not_exist.py"])
    out = tmp_path / "bench.json"
    assert bench.main(["--all", "--steps", "1", "--warmup", "0", "--matmul-n", "256", "--sample-batch", "2",
                       "--out", str(out), *override_args()]) == 0
    r = json.load(open(out))
    assert r["backend"] == "cpu" and r["matmul_flops_per_s"]["float32"] > 0 and r["commit"]
    good, bad = r["configs"]
    t = good["train"]
    assert t["step_time_s"] > 0 and t["flops_per_step"] > 0 and 0 < t["matmul_ratio"] < 10
    assert good["state_bytes_per_device"]["state"] > 0
    assert good["sampling"]["sampler"] == "images_per_s" and good["sampling"]["images_per_s"] > 0
    assert "error" in bad and "not_exist" in bad["error"]  # reported, and the suite went on
