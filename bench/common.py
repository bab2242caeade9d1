"""Helpers shared by the benchmarks: timing, percentiles, memory, machine description, child processes.

Every benchmark sets its figure beside a floor measured in the same run on the same
machine (raw COPY, the raw endpoint, exact search...), so the ratio means something
on a noisy machine. Child processes (the protocol double, gunicorn, celery workers)
are started here so their peak resident memory can be reported too.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


@dataclass
class Stopwatch:
    """Wall time of a block: `with Stopwatch() as watch: ...; watch.seconds`."""

    seconds: float = 0.0
    _started: float = field(default=0.0, repr=False)

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self._started


def machine_description() -> str:
    """One line naming the machine: CPU model, logical cores, memory, OS."""
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = psutil.virtual_memory().total / 2**30
    return (f"{cpu_model or 'unknown CPU'}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, "
            f"{platform.system()} {platform.release()}")


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident memory (VmHWM) of a process, this one by default, in MiB; 0 when it has gone."""
    status = Path(f"/proc/{pid or os.getpid()}/status")
    with contextlib.suppress(OSError):
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples the summed resident memory of a process tree; `peak_mib` is the highest sum seen.

    VmHWM is per process; a gunicorn or celery master with its forked children needs the
    sum over the tree, sampled while it runs.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_mib = max(self.peak_mib, total / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before listening on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def stop_process(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """SIGTERM a child we started, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextlib.contextmanager
def child_process(
    command: list[str], *, env: dict[str, str] | None = None, port: int | None = None, what: str,
    log_path: Path | None = None, ready_timeout: float = 60.0,
) -> Iterator[subprocess.Popen]:
    """Run a child process for the length of a block; waits for `port` when given; always stops it."""
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        command, cwd=REPOSITORY_ROOT, env={**os.environ, **(env or {})},
        stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        if port is not None:
            wait_for_port(port, timeout=ready_timeout, what=what, process=process)
        yield process
    finally:
        stop_process(process)
        if log_path:
            output.close()


def protocol_double_command(*, port: int, dimensions: int, extra: Sequence[str] = ()) -> list[str]:
    """The protocol double (devservices/embedding_double.py) as a child process on loopback."""
    return [sys.executable, "-m", "devservices.embedding_double", "--host", "127.0.0.1", "--port", str(port),
            "--dimensions", str(dimensions), *extra]


def gunicorn_command(*, port: int, workers: int = 2, threads: int = 4) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"]


def celery_worker_command(*, concurrency: int = 2, hostname: str = "bench@%h", queues: str | None = None,
                          loglevel: str = "WARNING") -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", loglevel,
               "--concurrency", str(concurrency), "--hostname", hostname, "--without-gossip", "--without-mingle"]
    if queues:
        command += ["--queues", queues]
    return command


def emit(result: dict, *, as_json_only: bool) -> None:
    """Print the report: a human summary unless --json, and always the JSON object as the last line."""
    if not as_json_only:
        for key, value in result.items():
            if key != "details":
                print(f"{key:>22}: {value}")
    print(json.dumps(result, ensure_ascii=False, default=float))


def process_cpu_seconds(pids) -> dict[int, float]:
    """{pid: user + system CPU seconds} of those processes still alive."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
    return seconds


def process_tree(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return []


class CpuMeter:
    """CPU milliseconds spent by groups of processes (found again at each reading) between start and stop.

    A process that appeared in between counts from zero; one that exited in between is not counted.
    """

    def __init__(self, groups: dict) -> None:
        self.groups = groups  # name -> callable returning the group's pids now

    def __enter__(self) -> CpuMeter:
        self.started = {name: process_cpu_seconds(pids()) for name, pids in self.groups.items()}
        return self

    def __exit__(self, *exc_info) -> None:
        self.spent_ms = {}
        for name, pids in self.groups.items():
            now = process_cpu_seconds(pids())
            self.spent_ms[name] = sum(seconds - self.started[name].get(pid, 0.0) for pid, seconds in now.items()) * 1000

    def per_request(self, requests: int) -> dict[str, float | None]:
        return {f"{name}_cpu_ms_per_request": round(spent / requests, 2) if requests else None
                for name, spent in self.spent_ms.items()}
