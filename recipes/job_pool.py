"""Commands run side by side, a few at a time, each with its log and progress bar (the demo's).

A job may need others to have succeeded first (the systems that read transcripts need the
Whisper job); among the jobs that can start, the one of highest ``priority`` starts first, so
the long ones do not end up alone at the end.
"""

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ser.console import progress_wanted
from ser.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]


class JobFailed(UserInputError):
    """A command of the pool failed; its own one-line error is quoted."""


@dataclass
class Job:
    """One command of the pool.

    ``progress(known_total)`` returns ``(done, total)`` for the bar (``total`` may be None, and
    need not be looked up again once ``known_total``); ``on_success(seconds)`` is called when the
    command has exited with 0. ``needs``: names of jobs that must succeed before this one starts.
    """

    name: str
    command: list
    log: Path
    description: str
    progress: Callable[[bool], tuple]
    unit: str
    on_success: Callable[[float], None]
    needs: tuple = ()
    priority: tuple = ()


@dataclass
class _Running:
    job: Job
    slot: int
    env: dict
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.job.log.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(self.job.log, "w")
        self.process = subprocess.Popen(self.job.command, cwd=ROOT, stdout=self.stream,
                                        stderr=subprocess.STDOUT, env=self.env)
        # A bar on a terminal only: piped output gets the result lines, not bars redrawn into a file.
        self.bar = tqdm(desc=self.job.description, unit=self.job.unit, leave=False, position=self.slot,
                        disable=not progress_wanted())

    def show_progress(self):
        done, total = self.job.progress(self.bar.total is not None)
        if total is not None and self.bar.total is None:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()
        self.stream.close()


def last_error_line(log):
    """The line of a command's log that says what went wrong (its ``: error: `` line, else the last)."""
    lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    return (errors or lines or ["no output"])[-1].strip()


def run_jobs(jobs, slots, env, poll_seconds=0.5):
    """Run ``jobs`` (a list of :class:`Job`), at most ``slots`` at a time, until all have ended.

    A job starts once the jobs it ``needs`` have succeeded, highest ``priority`` first (ties:
    the list's order). A failed job stops new starts; the running ones finish (their work is
    kept), then :class:`JobFailed` names every failure with its log. Ctrl-C (or any error here)
    terminates the running commands, which keep what they have saved.

    Example
    -------
    >>> import sys, tempfile
    >>> log = Path(tempfile.mkdtemp()) / "hello.log"
    >>> ended = []
    >>> hello = Job("hello", [sys.executable, "-c", "print('hi')"], log, "hello",
    ...             lambda known_total: (0, None), "step", lambda seconds: ended.append("hello"))
    >>> run_jobs([hello], slots=1, env=None)
    >>> ended, log.read_text()
    (['hello'], 'hi\\n')
    """
    waiting = sorted(jobs, key=lambda job: job.priority, reverse=True)  # stable: ties keep order
    running, failed, succeeded = [], [], set()
    try:
        while waiting or running:
            startable = [job for job in waiting if set(job.needs) <= succeeded]
            while startable and len(running) < slots and not failed:
                job = startable.pop(0)
                waiting.remove(job)
                slot = min(set(range(slots)) - {other.slot for other in running})
                running.append(_Running(job, slot, env))
            if failed and not running:
                break
            if not running and waiting:  # what they need did not run
                failed.extend(f"{job.name} cannot start: it needs {', '.join(job.needs)}" for job in waiting)
                break
            time.sleep(poll_seconds)
            for run in list(running):
                run.show_progress()
                if run.process.poll() is None:
                    continue
                run.close()
                running.remove(run)
                if run.process.returncode != 0:
                    failed.append(f"{run.job.name}: {last_error_line(run.job.log)} (full log: {run.job.log})")
                else:
                    succeeded.add(run.job.name)
                    run.job.on_success(time.perf_counter() - run.start)
    finally:
        for run in running:  # only on Ctrl-C or an error of this loop
            run.process.terminate()
            run.process.wait()
            run.close()
    if failed:
        raise JobFailed("; ".join(failed))
