#!/usr/bin/env python3
"""What the API's rights cost (issue 16), measured side by side on one
server, one database, one buildmaster site, back to back (not a test;
run by hand):

(a) ``GET /api/v1/work/<id>`` of a public build, anonymous vs with a
    token (the token's lookup is one more transaction per request);
(b) ``GET /files/<sha1>`` of a public 4 KiB file (what agents fetch), by
    a file store that checks who may read (the buildmaster's) vs one that
    does not (the store before issue 16), both over the same database;
(c) ``GET /files/<sha1>`` of restricted content read by its uploader:
    the slow path, which looks at every queued build's files (no
    counterpart: printed as a figure, not a ratio).

The farm holds --queued waiting builds, each with a filemap. Every
request is sequential over loopback. There are --rounds rounds of
--requests requests per side, and the two sides alternate which goes
first. The median per-request time of each round is listed, then the
median of those medians and the ratio. These are reads only, so the
server's durability settings (the test server's) do not enter into it.

    .venv/bin/python bench/api.py [--queued 5000] [--rounds 5] [--requests 200]
"""

import argparse
import warnings
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# readBody over a pooled connection warns once per request.
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.web import resource, server  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool, readBody  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

SEED = """
INSERT INTO processor (id, name) VALUES (1, 'amd64');
INSERT INTO job (id, job_type, status, requester)
  SELECT i, 'build', 0, 'seed' FROM generate_series(1, %(queued)s) i;
INSERT INTO build_farm_job (job, build_type, processor, status)
  SELECT id, 'script', 1, 0 FROM job;
INSERT INTO build_queue (job, build_farm_job, build_type, processor, filemap)
  SELECT id, id, 'script', 1,
         jsonb_build_object('build.sh', md5(id::text) || '00000000')
  FROM job;
SELECT setval('job_id_seq', %(queued)s);
ANALYZE;
"""


async def timed(agent, url, headers, count):
    """Median seconds per request of ``count`` sequential GETs."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = await agent.request(b"GET", url.encode(), headers)
        await readBody(response)
        times.append(time.perf_counter() - start)
        assert response.code == 200, (url, response.code)
    return statistics.median(times)


async def compare(agent, name, left, right, rounds, count):
    """Alternate two (label, url, headers) sides; print every round."""
    medians = {left[0]: [], right[0]: []}
    for n in range(rounds):
        order = (left, right) if n % 2 == 0 else (right, left)
        for label, url, headers in order:
            medians[label].append(await timed(agent, url, headers, count))
    print("\n(%s)" % name)
    for label, values in medians.items():
        print("  %-34s median %.3f ms   rounds: %s" % (
            label, statistics.median(values) * 1e3,
            ", ".join("%.3f" % (v * 1e3) for v in values)))
    a, b = (statistics.median(medians[left[0]]),
            statistics.median(medians[right[0]]))
    print("  ratio %s / %s: %.2f" % (right[0], left[0], b / a))


async def main(args):
    import psycopg2

    from lp_services.auth.tokens import create_token
    from lp_services.buildmaster.farm import Farm, FarmConfig
    from lp_services.buildmaster.web import build_site
    from lp_services.clock import utcnow
    from lp_services.database.sql import raw_cursor
    from lp_services.database.transactor import Transactor
    from lp_services.filestore.store import FileStore
    from lp_services.filestore.web import FileStoreResource
    from lp_services.testing.database import create_test_database

    url = create_test_database()
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(SEED, {"queued": args.queued})
    conn.close()
    transactor = Transactor(url)
    transactor.start()
    store = FileStore(Path(f"/tmp/bench-api-{time.time_ns()}"))

    def prepare(db):
        cursor = raw_cursor(db)
        token = create_token(cursor, "bench", "submitter", utcnow(reactor))
        public = store.add(db, "chroot.tar", io.BytesIO(b"p" * 4096)).sha1
        private = store.add(db, "src.tar", io.BytesIO(b"s" * 4096),
                            restricted=True, uploader="bench").sha1
        return token, public, private
    token, public, private = transactor.run_blocking(prepare)
    farm = Farm(transactor, reactor, store,
                FarmConfig(identity="bench", files_url="http://unset"))
    site = reactor.listenTCP(0, build_site(farm, None), interface="127.0.0.1")
    plain_root = resource.Resource()
    plain_root.putChild(b"files", FileStoreResource(store))
    plain = reactor.listenTCP(0, server.Site(plain_root),
                              interface="127.0.0.1")
    base = "http://127.0.0.1:%d" % site.getHost().port
    base_plain = "http://127.0.0.1:%d" % plain.getHost().port
    pool = HTTPConnectionPool(reactor)
    agent = Agent(reactor, pool=pool)
    anonymous = Headers()
    bearer = Headers({b"authorization": [b"Bearer " + token.encode()]})
    work = "%s/api/v1/work/%d" % (base, args.queued // 2)
    print("farm: %d queued builds; %d rounds x %d requests per side"
          % (args.queued, args.rounds, args.requests))
    await compare(agent, "a: one build's work answer",
                  ("anonymous", work, anonymous),
                  ("with a token", work, bearer), args.rounds, args.requests)
    await compare(agent, "b: a public file",
                  ("store without the check", base_plain + "/files/" + public,
                   anonymous),
                  ("buildmaster's store (checked)", base + "/files/" + public,
                   anonymous), args.rounds, args.requests)
    values = [await timed(agent, base + "/files/" + private, bearer,
                          args.requests) for _ in range(args.rounds)]
    print("\n(c: restricted content, read by its uploader)\n"
          "  median %.3f ms   rounds: %s" % (
              statistics.median(values) * 1e3,
              ", ".join("%.3f" % (v * 1e3) for v in values)))
    await pool.closeCachedConnections()
    await site.stopListening()
    await plain.stopListening()
    transactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    task.react(lambda _: defer.ensureDeferred(main(parser.parse_args())))
