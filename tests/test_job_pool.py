"""The demo's pool of commands (recipes/job_pool.py): order, dependencies, failures."""

import sys
import time

import pytest

from recipes.job_pool import Job, JobFailed, run_jobs


def _job(tmp_path, name, code="pass", needs=(), priority=(), events=None):
    # Each command records when it started and ended (wall clock), so the order can be checked.
    script = (f"import time, pathlib; p = pathlib.Path({str(tmp_path / name)!r}); "
              f"p.with_suffix('.start').write_text(repr(time.time())); {code}; "
              f"p.with_suffix('.end').write_text(repr(time.time()))")
    return Job(name, [sys.executable, "-c", script], tmp_path / f"{name}.log", name,
               lambda known_total: (0, None), "step",
               lambda seconds: events.append(name) if events is not None else None,
               needs=needs, priority=priority)


def _time(tmp_path, name, kind):
    return float((tmp_path / f"{name}.{kind}").read_text())


def test_a_job_starts_after_what_it_needs_and_by_priority(tmp_path):
    events = []
    jobs = [_job(tmp_path, "short", "time.sleep(0.2)", priority=(0,), events=events),
            _job(tmp_path, "text", "time.sleep(0.2)", needs=("whisper",), priority=(1,), events=events),
            _job(tmp_path, "whisper", "time.sleep(1.0)", priority=(2,), events=events),
            _job(tmp_path, "long", "time.sleep(0.5)", priority=(0, 2), events=events)]
    run_jobs(jobs, slots=2, env=None, poll_seconds=0.05)
    assert sorted(events) == ["long", "short", "text", "whisper"]
    # whisper and long (highest priorities that can start) first; short when long ends;
    # text only once whisper has succeeded.
    assert _time(tmp_path, "short", "start") >= _time(tmp_path, "long", "end")
    assert _time(tmp_path, "text", "start") >= _time(tmp_path, "whisper", "end")


def test_a_failure_stops_new_starts_and_names_its_log(tmp_path):
    failing = _job(tmp_path, "bad", "import sys; sys.exit('train.py: error: corpus missing')", priority=(1,))
    later = _job(tmp_path, "later")
    with pytest.raises(JobFailed) as error:
        run_jobs([failing, later], slots=1, env=None, poll_seconds=0.05)
    assert "bad: train.py: error: corpus missing (full log:" in str(error.value)
    assert not (tmp_path / "later.start").exists()


def test_a_job_whose_need_is_absent_is_reported(tmp_path):
    with pytest.raises(JobFailed, match="text cannot start: it needs whisper"):
        run_jobs([_job(tmp_path, "text", needs=("whisper",))], slots=2, env=None, poll_seconds=0.05)


def test_running_jobs_finish_after_one_fails(tmp_path):
    slow = _job(tmp_path, "slow", "time.sleep(0.6)", priority=(1,))
    failing = _job(tmp_path, "bad", "raise SystemExit(3)")
    start = time.time()
    with pytest.raises(JobFailed, match="bad"):
        run_jobs([slow, failing], slots=2, env=None, poll_seconds=0.05)
    assert (tmp_path / "slow.end").exists() and time.time() - start >= 0.6
