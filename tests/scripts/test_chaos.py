"""The chaos benchmark: a short run against the real supervisor with fake workers (one kill, one
rolling restart) meets every goal, and the way requests are judged."""

from __future__ import annotations

from scripts.chaos import (
    ChaosOptions,
    Kill,
    Outcome,
    Request,
    Run,
    Sample,
    examples,
    figures,
    goals,
    on_killed_worker,
    run_chaos,
)

WORKER = "http://127.0.0.1:7001"
LOST = f"worker lost mid-stream ({WORKER}: RemoteProtocolError: ...); retry the request"


def test_a_short_run_with_one_kill_and_a_rolling_restart_meets_every_goal() -> None:
    options = ChaosOptions(
        minutes=0.15,  # 9 s: with seed 1, one kill, 3.2 s in (the next would be at 9.9 s)
        streams=4,  # one worker runs them all at once (a batch of 4): none waits in line
        kill_every=5.0,
        seed=1,
        workers=2,
        warmup=1.0,
        worker_flags=("--chunks", "10", "--delay", "0.1"),  # 1 s streams
        health_interval=0.5,
    )
    run, f, verdicts = run_chaos(options)
    assert f["kills"] == 1, f
    # The kill was felt: the victim is one serving streams.
    assert f["error_event_on_killed_worker"] + f["failed_over_before_first_byte"] > 0, f
    assert f["rolling_restart_done"], f
    assert f["requests"] > 20 and f["completed"] > 0, f
    assert f["failovers_during_rolling_restart"] is not None, f
    assert [name for name, ok, _ in verdicts if not ok] == [], (f, verdicts, examples(run))


def _request(outcome: Outcome, *, chunks: int, detail: str = "", worker: str = WORKER) -> Request:
    return Request(
        "kills",
        10.0,
        ended=20.0,
        status=200,
        worker=worker,
        chunks=chunks,
        outcome=outcome,
        detail=detail,
    )


def test_an_error_counts_as_the_killed_workers_only_if_it_was_killed_while_the_stream_ran() -> None:
    request = _request(Outcome.ERROR_EVENT, chunks=3, detail=LOST)
    assert on_killed_worker(request, [Kill(15.0, WORKER, "cpu0 worker", 1)])
    assert not on_killed_worker(request, [Kill(25.0, WORKER, "cpu0 worker", 1)])
    assert not on_killed_worker(request, [Kill(15.0, "http://127.0.0.1:7002", "cpu1", 1)])


def test_an_error_before_any_audio_means_a_request_was_not_served_elsewhere() -> None:
    run = Run(
        ChaosOptions(),
        requests=[
            _request(Outcome.COMPLETED, chunks=5),
            _request(Outcome.ERROR_EVENT, chunks=0, detail=LOST),
        ],
        kills=[Kill(15.0, WORKER, "cpu0 worker", 1)],
        rolling=(30.0, 40.0),
        rolling_done=True,
        samples={"start": Sample(40.0, 70), "end": Sample(41.0, 70)},
    )
    f = figures(run)
    assert (f["error_event_mid_stream"], f["error_event_on_killed_worker"]) == (1, 1)
    assert f["error_event_before_first_audio"] == 1
    unmet = [name for name, ok, _ in goals(f) if not ok]
    assert unmet == [
        "every request that had not started is served elsewhere (where there was room)"
    ]
