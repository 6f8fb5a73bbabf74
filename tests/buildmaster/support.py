"""Shared fixtures of the buildmaster tests."""

import io
from pathlib import Path

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.farm import Farm, FarmConfig
from lp_services.buildmaster.scanner import BuilderScanner
from lp_services.testing.fakeagents import SyncTransactor
from lp_services.clock import utcnow
from lp_services.database.sql import raw_cursor
from lp_services.database.transactor import Transactor
from lp_services.filestore.store import FileStore
from lp_services.testing.clock import clock_at
from lp_services.testing.database import DatabaseTestMixin

CHROOT = b"a chroot tarball\n"


class FarmMixin(DatabaseTestMixin):
    """A database, a file store, a clock, a synchronous transactor, and
    helpers to add builders, chroots and builds."""

    def setUp(self):
        super().setUp()
        self.clock = clock_at()
        self.transactor = Transactor(self.database_url, max_threads=1)
        self.addCleanup(self.transactor.stop)
        self.sync = SyncTransactor(self.transactor)
        self.file_store = FileStore(Path(self.mktemp()))
        self.agents = {}
        self.commands = []
        self.command_result = 0
        self.farm = Farm(self.sync, self.clock, self.file_store,
                         FarmConfig(identity="test-master",
                                    files_url="http://master:8220"),
                         agent_factory=lambda v: self.agents[v.name],
                         run_command=self.run_command)

    def run_command(self, command, env, timeout):
        from twisted.internet import defer

        self.commands.append((command, env, timeout))
        return defer.succeed(self.command_result)

    def now(self):
        return utcnow(self.clock)

    def sql(self, function, *args, **kwargs):
        """Run function(cursor, ...) in one committed transaction."""
        return self.transactor.run_blocking(
            lambda store: function(raw_cursor(store), *args, **kwargs))

    def query(self, sql, params=None):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def add_builder(self, name="b1", processors=("amd64",), agent=None,
                    lease=True, **kwargs):
        kwargs.setdefault("url", "http://%s:8221" % name)
        if kwargs.get("virtualized"):
            kwargs.setdefault("reset_command", "reset-%s" % name)
        builder_id = self.sql(B.add_builder, name=name,
                              processors=list(processors), **kwargs)
        if lease:
            self.lease_builder(builder_id)
        if agent is not None:
            self.agents[name] = agent
        return builder_id

    def lease_builder(self, builder_id, master=None, until="infinity"):
        """Give ``master`` (this farm's identity) the builder's lease, for
        ever by default: scanners made directly by a test act only on
        builders their master holds (leases.py)."""
        master = master or self.farm.config.identity
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO buildmaster (name, host, pid, date_started,"
                " heartbeat) VALUES (%s, 'test', 0, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (master, self.now(), self.now()))
            cur.execute("UPDATE builder SET owner = %s,"
                        " lease_expires = %s::timestamptz WHERE id = %s",
                        (master, until, builder_id))

    def add_chroot(self, processor="amd64", series="default",
                   content=CHROOT):
        def add(store):
            record = self.file_store.add(store, "chroot.tar",
                                         io.BytesIO(content))
            B.register_chroot(store, processor, series, record.id)
            return record.sha1
        return self.transactor.run_blocking(add)

    def request(self, processor="amd64", **kwargs):
        kwargs.setdefault("build_type", "script")
        kwargs.setdefault("now", self.now())
        return self.sql(Q.request_build, processor=processor, **kwargs)

    def count_statements(self):
        """A StatementCounter counting from now to the end of the test."""
        from lp_services.testing.statements import StatementCounter

        counter = StatementCounter().install()
        self.addCleanup(counter.uninstall)
        return counter

    def scanner(self, name="b1"):
        vitals = self.sql(B.load_vitals, name)[0]
        self.farm.pending = set(self.sql(B.pending_work))
        return BuilderScanner(self.farm, vitals)

    def scan(self, scanner):
        """Run one scan to its end (everything is synchronous)."""
        self.farm.pending = set(self.sql(B.pending_work))
        d = scanner.scan()
        self.successResultOf(d)

    def build_row(self, job_id):
        return self.sql(Q.show_build, job_id, self.now())


class InProcessMaster:
    """A buildmaster's services in the test's reactor, for integration
    tests: a transactor, the farm, its HTTP site on a loopback port (the
    agents' ensurepresent URLs), the builder manager and the NOTIFY
    listener. Everything is stopped at the test's cleanup.

    Build it, set the database up (builders, chroots, builds), then
    ``await master.start()``.
    """

    def __init__(self, testcase, database_url, identity, **config):
        from twisted.internet import reactor

        from lp_services.buildmaster.service import BuilderManager
        from lp_services.buildmaster.web import build_site

        self.testcase, self.database_url = testcase, database_url
        self.file_store = FileStore(Path(testcase.mktemp()))
        self.transactor = Transactor(database_url, reactor=reactor)
        self.transactor.start()
        testcase.addCleanup(self.transactor.stop)
        self.farm = Farm(self.transactor, reactor, self.file_store,
                         FarmConfig(identity=identity, files_url="http://unset",
                                    **config),
                         reactor=reactor)
        self.manager = BuilderManager(self.farm)
        port = reactor.listenTCP(0, build_site(self.farm, self.manager),
                                 interface="127.0.0.1")
        testcase.addCleanup(port.stopListening)
        self.farm.config.files_url = "http://127.0.0.1:%d" % port.getHost().port

    async def start(self):
        """Start scanning and listening; return once LISTEN is connected."""
        from twisted.internet import reactor

        from lp_services.buildmaster.notify import NotifyListener

        self.manager.startService()
        self.testcase.addCleanup(self.manager.stopService)
        listener = NotifyListener(self.database_url, self.manager, reactor)
        listener.startService()
        self.testcase.addCleanup(listener.stopService)
        await listener.connected
