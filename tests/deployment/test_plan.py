"""The programs a deployment runs, from the start script's flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deployment.plan import Role, local_url, parse_options, plan


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
