"""``python -m lp_services.testing.server start|stop DIR``.

Starts (or stops) a throwaway embedded PostgreSQL in DIR for a whole test
run, so that trial's worker processes share one server. ``start`` prints
the server's URL; the test command exports it as LP_TEST_DATABASE_URL.
"""

import sys
from pathlib import Path

from lp_services.database.embedded import EmbeddedServer


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m lp_services.testing.server start|stop DIR",
              file=sys.stderr)
        return 2
    server = EmbeddedServer(Path(argv[1]), fast_unsafe=True)
    if argv[0] == "start":
        print(server.start())
    else:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
