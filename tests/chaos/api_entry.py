"""The dev API (``newsletter_queue.api.create_app``) served by uvicorn in its own process.

    python -m tests.chaos.api_entry --port N

Configured from the environment like the worker processes (``REDIS_URL``, ``NLQ_*``).
Exits with status 3 if this checkout has no ``create_app``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import uvicorn

from newsletter_queue.config import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        create_app = importlib.import_module("newsletter_queue.api").create_app
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"no dev API in this checkout: {exc}\n")
        sys.exit(3)
    app = create_app(Settings(_env_file=None))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
