"""`python -m devservices start|stop|status`: manage the embedded services under var/."""
from __future__ import annotations

import argparse

from . import embedding_server, postgres, redis
from .processes import port_is_open


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devservices")
    parser.add_argument("action", choices=["start", "stop", "status"])
    action = parser.parse_args().action
    if action == "start":
        print("postgres ", postgres.ensure_postgres())
        print("redis    ", redis.ensure_redis())
        print("embedding", embedding_server.ensure_embedding_server())
    elif action == "stop":
        print("embedding stopped" if embedding_server.stop_embedding_server() else "embedding was not running")
        print("redis stopped" if redis.stop_redis() else "embedded redis was not running")
        print("postgres stopped" if postgres.stop_postgres() else "postgres was not running")
    else:
        for name, host, port in [
            ("postgres", postgres.HOST, postgres.PORT),
            ("redis (embedded)", "127.0.0.1", redis.EMBEDDED_PORT),
            ("embedding", embedding_server.HOST, embedding_server.PORT),
        ]:
            print(f"{name:18} {host}:{port} {'up' if port_is_open(host, port) else 'down'}")


if __name__ == "__main__":
    main()
