"""Every daemon survives PostgreSQL going away for 30 seconds.

A buildmaster, a job runner and an agent run as real twistd processes.
Work is queued, PostgreSQL is stopped for 30 s and started again, more
work is queued; all of it must finish, no daemon may exit, and the
buildmaster and the runner must each log one clear line when they lose the
database and one when they have it back. (The agent has no database.)
"""

import io
import os
import re
import secrets
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer
from lp_services.database.schema import upgrade
from lp_services.cli.demo_farm import Daemon, free_port
from lp_services.testing.tiers import slow

DOWNTIME = 30.0
_SCRIPT = b"#!/bin/sh\necho built > /work/out/result.txt\n"

#: What the daemons log, each way (see docs/operations.md).
LOST = re.compile(r"(lost|cannot reach|unreachable).*database|database.*(lost|unreachable|went away)", re.I)
BACK = re.compile(r"(reconnected|back|connected).*database|database.*(back|reconnected)", re.I)


class ReconnectionTests(TestCase):
    """Thirty seconds without PostgreSQL lose nothing."""

    timeout = 600

    def setUp(self):
        if os.geteuid() != 0 or shutil.which("bwrap") is None:
            self.skipTest("needs root and bubblewrap (./run installs it)")

    def test_thirty_seconds_without_postgresql(self):
        """Work queued before and after the outage all completes."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        server = EmbeddedServer(home, fast_unsafe=True)
        url = server.start()
        self.addCleanup(server.stop)
        conn = psycopg2.connect(url)
        upgrade(conn)
        conn.close()
        env = {k: v for k, v in os.environ.items() if k != "LP_DATABASE_URL"}
        env["LP_HOME"] = str(home)
        daemons = []

        def twistd(name, *args):
            daemon = Daemon(name, [
                sys.executable, "-c",
                "from twisted.scripts.twistd import run; run()",
                "--nodaemon", "--pidfile=",
                "--logfile=%s" % (home / (name + ".log")), *args],
                home / (name + ".out"), env=env)
            daemon.start()
            daemons.append(daemon)
            self.addCleanup(daemon.stop)
            return daemon

        port, secret = free_port(), secrets.token_hex(8)
        (home / "secret").write_text(secret)
        twistd("agent", "buildslave", "--name", "agent", "--arch-tag", "amd64",
               "--cache-dir", str(home / "cache"), "--work-dir",
               str(home / "work"), "--port", str(port), "--interface",
               "127.0.0.1", "--secret-file", str(home / "secret"))
        script_sha1 = self.set_up_farm(url, home, port, secret)
        bm_port = free_port()
        twistd("buildmaster", "buildmaster", "--database", url, "--home",
               str(home), "--port", "tcp:%d:interface=127.0.0.1" % bm_port,
               "--files-url", "http://127.0.0.1:%d" % bm_port,
               "--interval", "1")
        twistd("jobrunner", "jobrunner", "--database", url,
               "--poll-interval", "1", "--holder", "runner")

        self.queue(url, script_sha1, jobs=20, builds=2)
        self.wait_until_done(url, daemons, 120)
        server.stop()
        time.sleep(DOWNTIME)
        server.start()
        self.queue(url, script_sha1, jobs=20, builds=2)
        self.wait_until_done(url, daemons, 180)

        conn = psycopg2.connect(url)
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            cur.execute("SELECT job_type, status, count(*) FROM job"
                        " GROUP BY 1, 2 ORDER BY 1, 2")
            self.assertEqual(cur.fetchall(),
                             [("build", 2, 4), ("noop", 2, 40)])
        for daemon in daemons:
            self.assertFalse(daemon.exited(), "%s exited" % daemon.name)
        for name in ("buildmaster", "jobrunner"):
            log = (home / (name + ".log")).read_text()
            lost = [m.start() for m in LOST.finditer(log)]
            self.assertTrue(lost, "%s logged no line on losing the database"
                            % name)
            back = [m.start() for m in BACK.finditer(log) if m.start() > lost[0]]
            self.assertTrue(back, "%s logged no line on getting the database "
                            "back" % name)

    def set_up_farm(self, url, home, port, secret) -> str:
        from storm.database import create_database
        from storm.store import Store

        from lp_services.buildmaster.builders import add_builder
        from lp_services.database.connection import storm_uri
        from lp_services.database.sql import raw_cursor
        from lp_services.filestore.store import FileStore
        from lp_services.slave.busybox_chroot import busybox_chroot

        store = Store(create_database(storm_uri(url)))
        try:
            files = FileStore(home / "files")
            add_builder(raw_cursor(store), name="agent",
                        url="http://127.0.0.1:%d" % port,
                        processors=["amd64"], secret=secret)
            chroot = files.add_path(store, busybox_chroot())
            script = files.add(store, "build.sh", io.BytesIO(_SCRIPT))
            raw_cursor(store).execute(
                "INSERT INTO chroot (processor, library_file)"
                " SELECT id, %s FROM processor WHERE name = 'amd64'",
                (chroot.id,))
            store.commit()
            return script.sha1
        finally:
            store.close()

    def queue(self, url, script_sha1, jobs, builds):
        from lp_services.buildmaster.queue import request_build
        from lp_services.job.enqueue import enqueue

        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                for _ in range(jobs):
                    enqueue(cur, "noop")
                for _ in range(builds):
                    request_build(cur, build_type="script", processor="amd64",
                                  now=datetime.now(timezone.utc),
                                  build_args={"script": "build.sh"},
                                  filemap={"build.sh": script_sha1})
        finally:
            conn.close()

    def wait_until_done(self, url, daemons, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for daemon in daemons:
                if daemon.exited():
                    self.fail("%s exited; see %s" % (daemon.name,
                                                    daemon.log_path))
            try:
                conn = psycopg2.connect(url)
            except psycopg2.OperationalError:
                time.sleep(0.5)
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM job"
                                " WHERE status NOT IN (2, 3)")
                    if cur.fetchone()[0] == 0:
                        return
            finally:
                conn.close()
            time.sleep(0.5)
        self.fail("work did not finish within %ds" % timeout)


ReconnectionTests = slow(ReconnectionTests)
