"""``python -m model_server``: serve HTTP (PORT, default 5000) and gRPC
(GRPC_PORT, default 50051) from one process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import ConfigError, load_settings  # noqa: E402
from .server import ModelServer  # noqa: E402


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(ModelServer(settings).run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
