"""The programs a deployment runs, from the start script's flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from balancer import config as balancer_config
from deployment import __main__ as deployment_main
from deployment.plan import (
    SUPERVISOR_KEY_ENV,
    PlanError,
    Role,
    local_url,
    parse_options,
    plan,
    visible_devices,
)


def test_one_cpu_worker_without_a_gpu_and_the_balancer_in_front() -> None:
    worker, balancer = plan(parse_options([]), gpus=0)
    assert worker.name == "cpu0 worker" and worker.role is Role.WORKER
    assert worker.argv[:3] == (sys.executable, "-m", "server")
    assert "--device" in worker.argv and worker.argv[worker.argv.index("--device") + 1] == "cpu"
    assert worker.env == {"CUDA_VISIBLE_DEVICES": ""}
    assert worker.url == "http://127.0.0.1:6093"
    assert worker.log == Path("logs/cpu0_streaming_server.log")
    assert balancer.role is Role.BALANCER and balancer.url == "http://localhost:6095"
    assert balancer.argv[balancer.argv.index("--workers") + 1] == "http://127.0.0.1:6093"


def test_a_worker_per_gpu_each_seeing_its_own() -> None:
    options = parse_options(["--random-weights", "--max-batch", "8", "--", "--watermark"])
    *workers, balancer = plan(options, gpus=2)
    assert [w.name for w in workers] == ["gpu0 worker", "gpu1 worker"]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1"]
    assert [w.url for w in workers] == ["http://127.0.0.1:6093", "http://127.0.0.1:6094"]
    argv = workers[1].argv
    assert argv[-3:] == ("--device", "cuda:0", "--watermark")  # extra flags come last
    assert "--random-weights" in argv and argv[argv.index("--max-batch") + 1] == "8"
    assert argv[argv.index("--drain-timeout") + 1] == "30"
    workers_flag = balancer.argv[balancer.argv.index("--workers") + 1]
    assert workers_flag == "http://127.0.0.1:6093,http://127.0.0.1:6094"


def test_more_workers_than_gpus_share_them() -> None:
    workers = plan(parse_options(["--workers", "3"]), gpus=2)[:-1]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1", "0"]


def test_random_weights_and_a_checkpoint_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse_options(["--random-weights", "--ckpt-dir", "/ckpt"])


def test_the_balancer_is_reached_on_loopback_when_it_listens_everywhere() -> None:
    assert local_url("0.0.0.0", 6095) == "http://localhost:6095"
    assert local_url("10.0.0.5", 80) == "http://10.0.0.5:80"


def test_the_users_cuda_visible_devices_are_given_out_in_order() -> None:
    # Worker N sees the N-th listed device, whatever it is called; by default one per device.
    visible = visible_devices({"CUDA_VISIBLE_DEVICES": "2, 5,GPU-8f1c"})
    assert visible == ("2", "5", "GPU-8f1c")
    workers = plan(parse_options([]), gpus=8, visible=visible)[:-1]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == ["2", "5", "GPU-8f1c"]
    assert [w.name for w in workers] == ["gpu0 worker", "gpu1 worker", "gpu2 worker"]
    assert all(w.argv[w.argv.index("--device") + 1] == "cuda:0" for w in workers)
    two = plan(parse_options(["--workers", "2"]), gpus=8, visible=visible)[:-1]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in two] == ["2", "5"]


def test_more_workers_than_listed_devices_is_an_error_that_says_so() -> None:
    visible = visible_devices({"CUDA_VISIBLE_DEVICES": "1,3"})
    with pytest.raises(PlanError, match=r"--workers 3 .* CUDA_VISIBLE_DEVICES lists 2 \(1,3\)"):
        plan(parse_options(["--workers", "3"]), gpus=4, visible=visible)


def test_unset_cuda_visible_devices_keeps_worker_n_on_gpu_n() -> None:
    assert visible_devices({}) is None
    workers = plan(parse_options([]), gpus=3, visible=visible_devices({}))[:-1]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1", "2"]


def test_an_empty_cuda_visible_devices_hides_the_gpus() -> None:
    visible = visible_devices({"CUDA_VISIBLE_DEVICES": ""})
    assert visible == ()
    worker, _ = plan(parse_options([]), gpus=2, visible=visible)
    assert worker.name == "cpu0 worker" and worker.env == {"CUDA_VISIBLE_DEVICES": ""}
    assert worker.argv[worker.argv.index("--device") + 1] == "cpu"


def test_without_a_gpu_a_listed_device_changes_nothing() -> None:
    worker, _ = plan(parse_options([]), gpus=0, visible=("0",))
    assert worker.name == "cpu0 worker" and worker.env == {"CUDA_VISIBLE_DEVICES": ""}


def test_the_start_script_refuses_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deployment_main, "detect_gpus", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    logs = tmp_path / "logs"
    assert deployment_main.main(["--workers", "2", "--log-dir", str(logs)]) == 2
    error = capsys.readouterr().err
    assert "error: --workers 2" in error and "CUDA_VISIBLE_DEVICES lists 1 (3)" in error
    assert not logs.exists()


def test_only_the_balancer_gets_the_supervisors_key_and_it_is_never_shown() -> None:
    programs = plan(parse_options(["--workers", "2"]), gpus=0, supervisor_key="s3cret-key")
    *workers, balancer = programs
    assert balancer.env == {SUPERVISOR_KEY_ENV: "s3cret-key"}
    assert all(SUPERVISOR_KEY_ENV not in w.env for w in workers)
    assert "s3cret-key" not in repr(programs) and "s3cret-key" not in " ".join(balancer.argv)
    assert SUPERVISOR_KEY_ENV == balancer_config.SUPERVISOR_KEY_ENV  # the balancer reads it
