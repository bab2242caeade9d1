"""Entry point: `python -m bench NAME [--json] [options]` runs bench/NAME.py's `main(argv)`."""
from __future__ import annotations

import importlib
import os
import sys


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print("usage: python -m bench NAME [--json] [options]"
              "  (NAME: embed, ingest, knn, pipeline, faq, geometry, all)")
        raise SystemExit(2)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    module = importlib.import_module(f"bench.{sys.argv[1]}")
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
