"""Tests of the embedded server (lp_services.database.embedded).

These start real PostgreSQL clusters in temporary directories.
"""

import os
import shutil
import tempfile
import threading
from pathlib import Path

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer


def postmasters_for(pgdata: Path) -> list[int]:
    """Pids of live postgres postmasters serving ``pgdata``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"/postgres") and \
                str(pgdata).encode() in cmdline:
            pids.append(int(entry))
    return pids


class EmbeddedServerTests(TestCase):
    """start, reuse, state and stop of one cluster."""

    def setUp(self):
        self.home = Path(tempfile.mkdtemp(prefix="lp-embedded-test-"))
        self.server = EmbeddedServer(self.home, fast_unsafe=True)
        self.addCleanup(shutil.rmtree, self.home, ignore_errors=True)
        self.addCleanup(self.server.stop)

    def test_start_creates_database_and_reuses(self):
        """start() initialises, serves lp_services, and a second start reuses."""
        url = self.server.start()
        first = self.server.state()
        self.assertTrue(first.running)
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            self.assertEqual(cur.fetchone()[0], "lp_services")
        conn.close()
        again = EmbeddedServer(self.home).start()
        self.assertEqual(again, url)
        self.assertEqual(self.server.state().pid, first.pid)
        self.assertEqual(postmasters_for(self.server.pgdata), [first.pid])

    def test_stop_leaves_no_process(self):
        """After stop() no postmaster for the data directory is left."""
        self.server.start()
        self.assertTrue(self.server.stop())
        self.assertEqual(postmasters_for(self.server.pgdata), [])
        self.assertFalse(self.server.state().running)
        self.assertIsNone(self.server.url())
        self.assertFalse(self.server.stop())

    def test_restart_keeps_data(self):
        """Data survives stop and start."""
        url = self.server.start()
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        conn.close()
        url = self.server.restart()
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM kept")
            self.assertEqual(cur.fetchone()[0], 7)
        conn.close()

    def test_restart_keeps_port_with_connections_in_time_wait(self):
        """A restarted server keeps its URL even after busy connections.

        Closed connections linger in TIME_WAIT; the port must not be
        considered taken, or clients holding the URL would lose the server.
        """
        url = self.server.start()
        for _ in range(5):
            conn = psycopg2.connect(url)
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.close()
        self.assertEqual(self.server.restart(), url)

    def test_two_starts_at_once_leave_one_server(self):
        """Concurrent start() calls agree on one server."""
        urls, errors = [], []

        def start():
            try:
                urls.append(EmbeddedServer(self.home, fast_unsafe=True).start())
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=start) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(set(urls)), 1)
        self.assertEqual(len(postmasters_for(self.server.pgdata)), 1)
