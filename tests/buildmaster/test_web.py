"""Tests of the HTTP file store and the twistd options."""

import io
from pathlib import Path

from twisted.internet import reactor
from twisted.python import usage
from twisted.trial.unittest import TestCase
from twisted.web import server
from twisted.web.client import Agent, readBody

from lp_services.buildmaster import tap
from lp_services.filestore.store import FileStore
from lp_services.filestore.web import FileStoreResource


class FileStoreWebTests(TestCase):
    """GET /files/<sha1>[/<name>] over real HTTP."""

    def setUp(self):
        self.store = FileStore(Path(self.mktemp()))
        self.sha1 = self.store.put_stream(io.BytesIO(b"hello\n"))[0]
        from twisted.web import resource

        root = resource.Resource()
        root.putChild(b"files", FileStoreResource(self.store))
        self.port = reactor.listenTCP(0, server.Site(root),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = "http://127.0.0.1:%d/files/" % self.port.getHost().port

    async def get(self, path):
        response = await Agent(reactor).request(
            b"GET", (self.base + path).encode())
        return response, await readBody(response)

    async def test_by_sha1(self):
        """The content is served under its sha1, with or without a name;
        always as a download (tests/filestore/test_web.py)."""
        response, body = await self.get(self.sha1)
        self.assertEqual((response.code, body), (200, b"hello\n"))
        response, body = await self.get(self.sha1 + "/log.txt")
        self.assertEqual(body, b"hello\n")
        self.assertEqual(b"application/octet-stream",
                         response.headers.getRawHeaders(b"content-type")[0])

    async def test_missing_and_bad(self):
        """Unknown sha1s, non-sha1s and extra path segments are 404."""
        for path in ("0" * 40, "nonsense", self.sha1 + "/a/b", "../etc"):
            response, _ = await self.get(path)
            self.assertEqual(response.code, 404, path)


class OptionsTests(TestCase):
    """`twistd buildmaster` options and service tree."""

    def test_service_tree(self):
        """makeService builds transactor, HTTP site, manager, listener,
        without touching the database."""
        options = tap.Options()
        options.parseOptions(["--database", "postgresql://nowhere/x",
                              "--port", "tcp:0", "--interval", "5",
                              "--files-url", "http://m:1"])
        service = tap.makeService(options)
        self.assertEqual(len(list(service)), 4)
        self.assertEqual(service.farm.config.interval, 5.0)
        self.assertEqual(service.farm.file_url("a" * 40),
                         "http://m:1/files/" + "a" * 40)

    def test_config_file_and_bad_values(self):
        """A [buildmaster] TOML table sets options; bad values, unknown
        keys and a file that is not TOML are usage errors."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[buildmaster]\ninterval = 7\nidentity = "bm1"\n'
                    'files_url = "http://m:1"\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        self.assertEqual((options["interval"], options["identity"],
                          options["files-url"]), ("7", "bm1", "http://m:1"))
        self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                          ["--interval", "-1"])
        for text in ("[buildmaster]\nnonsense = 1\n", "interval = \n",
                     "[buildmaster]\ninterval = [1]\n"):
            with open(path, "w") as f:
                f.write(text)
            self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                              ["--config", path])
