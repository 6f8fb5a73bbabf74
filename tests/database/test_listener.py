"""Tests of the reconnecting LISTEN connection
(lp_services.database.listener), against real PostgreSQL; retry delays
run on a task.Clock."""

import socket

import psycopg2
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from lp_services.database.listener import Listener, reconnect_delay
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import wait_for


def closed_port_url() -> str:
    """A libpq URL nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return "postgresql://nobody@127.0.0.1:%d/none?connect_timeout=2" % port


class RetryPolicyTests(TestCase):
    """The retry loop: injected policy and clock."""

    def test_default_policy_backs_off_to_five_seconds(self):
        """0.1 s doubling, at most 5 s."""
        self.assertEqual([reconnect_delay(n) for n in (1, 2, 3)],
                         [0.1, 0.2, 0.4])
        self.assertEqual(reconnect_delay(30), 5.0)

    async def test_retries_on_the_injected_clock_until_stopped(self):
        """Each failed attempt asks the policy for its delay and waits for
        it on the injected clock; stop() cancels the wait and nothing is
        tried again."""
        clock = task.Clock()
        asked = []

        def policy(attempt):
            asked.append(attempt)
            return 7.0
        listener = Listener(closed_port_url(), ["x"], lambda n: None,
                            reactor=reactor, clock=clock,
                            retry_policy=policy, name="test")
        started = listener.start()
        await wait_for(lambda: asked == [1])
        clock.advance(6.9)
        self.assertEqual(asked, [1])
        clock.advance(0.1)
        await wait_for(lambda: asked == [1, 2])
        self.assertFalse(started.called)
        listener.stop()
        self.assertTrue(started.called)
        clock.advance(100)
        self.assertEqual(asked, [1, 2])
        self.assertIsNone(listener.connection)


class ListenerTests(DatabaseTestMixin, TestCase):
    """LISTEN on a real server, losing it and getting it back."""

    def notify(self, channel, payload):
        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        conn.close()

    def terminate(self, pid):
        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.close()

    async def start_listener(self, **kwargs):
        self.received = []
        self.connections = []
        listener = Listener(
            self.database_url, ["lp_test"],
            lambda n: self.received.append(n.payload), reactor=reactor,
            retry_policy=lambda n: 0.05,
            on_connected=lambda: self.connections.append(1),
            name="test", **kwargs)
        self.addCleanup(listener.stop)
        await listener.start()
        return listener

    async def backend_pid(self, listener):
        rows = await listener.connection.runQuery("SELECT pg_backend_pid()")
        return rows[0][0]

    async def test_notifications_on_its_channels_only(self):
        """Notifications on the channel reach on_notify; others do not."""
        listener = await self.start_listener()
        self.assertIsNotNone(listener.connection)
        self.notify("other", "no")
        self.notify("lp_test", "yes")
        await wait_for(lambda: self.received)
        self.assertEqual(self.received, ["yes"])

    async def test_reconnects_after_the_backend_is_terminated(self):
        """A terminated backend is noticed, the listener reconnects (a
        new backend), calls on_connected again, and LISTENs again."""
        listener = await self.start_listener()
        first = await self.backend_pid(listener)
        self.terminate(first)
        await wait_for(lambda: len(self.connections) == 2)
        second = await self.backend_pid(listener)
        self.assertNotEqual(first, second)
        self.notify("lp_test", "after")
        await wait_for(lambda: self.received)
        self.assertEqual(self.received, ["after"])

    async def test_prepare_runs_on_every_connection(self):
        """The prepare hook runs on each new connection before it is
        handed out (here: a session setting the user then sees)."""
        async def prepare(conn):
            await conn.runOperation("SET application_name = 'prepared'")
        listener = await self.start_listener(
            prepare=lambda c: defer.ensureDeferred(prepare(c)))
        rows = await listener.connection.runQuery(
            "SELECT current_setting('application_name')")
        self.assertEqual(rows[0][0], "prepared")
        self.terminate(await self.backend_pid(listener))
        await wait_for(lambda: len(self.connections) == 2)
        rows = await listener.connection.runQuery(
            "SELECT current_setting('application_name')")
        self.assertEqual(rows[0][0], "prepared")

    async def test_user_reported_loss_reconnects(self):
        """lost() from the user (a failed query) drops that connection and
        reconnects; a stale report about an old connection is ignored."""
        listener = await self.start_listener()
        old = listener.connection
        listener.lost(old, RuntimeError("query failed"))
        self.assertIsNone(listener.connection)
        await listener.when_connected()
        self.assertIsNot(listener.connection, old)
        current = listener.connection
        listener.lost(old, RuntimeError("stale"))
        self.assertIs(listener.connection, current)
        self.assertEqual(len(self.connections), 2)
