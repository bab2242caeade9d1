"""`make run`: set up and run the whole service on this machine.

1. Start (or reuse) the embedded services for every unset URL, migrate, create a staff account.
2. Load sample data (from ../shared/data when present, else the small sample in sample_data/).
3. Run the web server, a Celery worker and Celery beat, logging to var/log/.
4. On Ctrl-C or SIGTERM stop all of them, and the embedded services, leaving no stray process.

`--background` does the same detached (pid in var/run/service.pid); `--stop` ends it.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

from .processes import LOG_DIR, REPOSITORY_ROOT, RUN_DIR, VAR_DIR, read_pid, stop_pid, wait_for_port

WEB_HOST = os.environ.get("WEB_HOST", "127.0.0.1")
WEB_PORT = int(os.environ.get("WEB_PORT", "8000"))
SERVICE_PID = RUN_DIR / "service.pid"
CREDENTIALS = VAR_DIR / "admin-credentials.txt"


def manage(*arguments: str) -> None:
    subprocess.run([sys.executable, "manage.py", *arguments], check=True, cwd=REPOSITORY_ROOT)


def ensure_staff_account() -> tuple[str, str]:
    """Create the first staff account once; its password is kept (0600) in var/ and printed on every run."""
    if CREDENTIALS.exists():
        username, password = CREDENTIALS.read_text().split()[:2]
        return username, password
    username, password = "admin", secrets.token_urlsafe(12)
    script = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"u, _ = U.objects.get_or_create(username={username!r}, defaults={{'is_staff': True, 'is_superuser': True}}); "
        f"u.set_password({password!r}); u.save()"
    )
    manage("shell", "-c", script)
    CREDENTIALS.write_text(f"{username} {password}\n")
    CREDENTIALS.chmod(0o600)
    return username, password


def start_processes() -> list[subprocess.Popen]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [sys.executable, "manage.py", "runserver", f"{WEB_HOST}:{WEB_PORT}", "--noreload"],
        "worker": [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
                   "--loglevel", "INFO", "-n", "worker@%h"],
        "beat": [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--schedule", str(VAR_DIR / "celerybeat-schedule")],
    }
    processes = []
    for name, command in commands.items():
        log = open(LOG_DIR / f"{name}.log", "ab")
        processes.append(subprocess.Popen(command, cwd=REPOSITORY_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
    return processes


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_embedded_services() -> None:
    from . import embedding_server, postgres, redis

    if not os.environ.get("EMBEDDING_BASE_URL"):
        embedding_server.stop_embedding_server()
    if not os.environ.get("CELERY_BROKER_URL"):
        redis.stop_redis()
    if not os.environ.get("DATABASE_URL"):
        postgres.stop_postgres()


def run_foreground(*, sample_data: str) -> None:
    started = time.monotonic()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    SERVICE_PID.write_text(str(os.getpid()))
    manage("migrate", "--no-input", "-v", "0")
    username, password = ensure_staff_account()
    if sample_data != "none":
        manage("load_sample_data", *(["--repository-sample-only"] if sample_data == "repository" else []))
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    processes = start_processes()
    try:
        wait_for_port(WEB_HOST, WEB_PORT, timeout=120, what="web server", log_path=LOG_DIR / "web.log")
        print(
            f"\nReady in {time.monotonic() - started:.1f}s.\n"
            f"  Public FAQ form:   http://{WEB_HOST}:{WEB_PORT}/ask/\n"
            f"  Upload declarations: http://{WEB_HOST}:{WEB_PORT}/declarations/upload/\n"
            f"  Django admin:      http://{WEB_HOST}:{WEB_PORT}/admin/   (user {username}, password {password})\n"
            f"  API schema / docs: http://{WEB_HOST}:{WEB_PORT}/api/schema/  /api/docs/\n"
            f"  Health:            http://{WEB_HOST}:{WEB_PORT}/healthz\n"
            f"  Logs:              {LOG_DIR}/\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    print(f"{process.args[2]} exited with {process.returncode}; see {LOG_DIR}. Stopping.", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("Stopping web, worker, beat and the embedded services...", flush=True)
        stop_processes(processes)
        stop_embedded_services()
        SERVICE_PID.unlink(missing_ok=True)
        print("Stopped.", flush=True)


def run_background(*, sample_data: str) -> None:
    if read_pid(SERVICE_PID) is not None:
        print(f"already running (pid {read_pid(SERVICE_PID)}); `make stop` ends it")
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "service.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "devservices.run", "--sample-data", sample_data], cwd=REPOSITORY_ROOT,
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"starting in the background; progress and URLs in {LOG_DIR / 'service.log'}; `make stop` ends it")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devservices.run", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--background", action="store_true", help="run detached; `--stop` ends it")
    group.add_argument("--stop", action="store_true", help="stop a background run")
    parser.add_argument("--sample-data", choices=["auto", "repository", "none"], default="auto",
                        help="auto: ../shared/data when present, else sample_data/data; repository: only the latter")
    arguments = parser.parse_args()
    if arguments.stop:
        print("stopped" if stop_pid(SERVICE_PID, timeout=30) else "not running")
    elif arguments.background:
        run_background(sample_data=arguments.sample_data)
    else:
        run_foreground(sample_data=arguments.sample_data)


if __name__ == "__main__":
    main()
