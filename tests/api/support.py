"""A buildmaster's site (status pages, file store, API) on loopback over a
real database, with a token per role, and a client that checks every
answer against ``/api/v1/openapi.json``."""

import hashlib
import io
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from twisted.internet import reactor
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from lp_services.api.openapi import description
from lp_services.auth.tokens import create_token
from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.farm import Farm, FarmConfig
from lp_services.buildmaster.web import build_site
from lp_services.clock import utcnow
from lp_services.database.sql import raw_cursor
from lp_services.database.transactor import Transactor
from lp_services.filestore.store import FileStore
from lp_services.testing.database import DatabaseTestMixin

#: The tokens every test has: name -> role.
ROLES = {"alice": "submitter", "bob": "submitter", "olga": "operator",
         "adam": "admin"}


def answer_schema(method: str, path: str, code: int):
    """The schema the description gives answer ``code`` of ``method
    path`` (a path with its ids in braces), or None (no body)."""
    doc = description()
    operation = doc["paths"][path][method.lower()]
    answer = operation["responses"][str(code)]
    content = answer.get("content")
    return None if content is None else content["application/json"]["schema"]


def check_shape(method: str, template: str, code: int, body) -> None:
    """Fail unless ``body`` has the shape the description promises."""
    doc = description()
    schema = answer_schema(method, template, code)
    if schema is None:
        return
    registry = Registry().with_resource(
        "urn:api", Resource.from_contents(
            dict(doc, **{"$schema":
                         "https://json-schema.org/draft/2020-12/schema"})))
    jsonschema.Draft202012Validator(
        {"$ref": "urn:api" + schema["$ref"]}, registry=registry,
        format_checker=jsonschema.FormatChecker()).validate(body)


class SiteMixin(DatabaseTestMixin):
    """The site on 127.0.0.1, tokens in ``self.tokens``, and helpers."""

    upload_limit = 1 << 20

    def setUp(self):
        super().setUp()
        self.transactor = Transactor(self.database_url)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)
        self.file_store = FileStore(Path(self.mktemp()))
        self.farm = Farm(self.transactor, reactor, self.file_store,
                         FarmConfig(identity="api-test",
                                    files_url="http://unset"))
        self.site = build_site(self.farm, None,
                               upload_limit=self.upload_limit)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = "http://127.0.0.1:%d" % self.port.getHost().port
        self.farm.config = FarmConfig(identity="api-test",
                                      files_url=self.base)
        self.tokens = {name: self.sql(create_token, name, role, self.now())
                       for name, role in ROLES.items()}

    def now(self):
        return utcnow(reactor)

    def sql(self, function, *args, **kwargs):
        """function(cursor, ...) in one committed transaction."""
        return self.transactor.run_blocking(
            lambda store: function(raw_cursor(store), *args, **kwargs))

    def query(self, statement, params=None):
        def run(cursor):
            cursor.execute(statement, params)
            return cursor.fetchall()
        return self.sql(run)

    # -- the farm ------------------------------------------------------------

    def add_chroot(self, processor="amd64"):
        def add(store):
            B.add_builder(store, name="b1", url="http://127.0.0.1:9",
                          processors=[processor])
            record = self.file_store.add(store, "chroot.tar.gz",
                                         io.BytesIO(b"chroot\n"))
            B.register_chroot(store, processor, "default", record.id)
        self.transactor.run_blocking(add)

    def stored(self, content: bytes, name="f", **kwargs) -> str:
        """Store ``content`` as the command line does; its sha1."""
        return self.transactor.run_blocking(
            lambda store: self.file_store.add(
                store, name, io.BytesIO(content), **kwargs).sha1)

    def queue_build(self, requester=None, private=False, content=b"echo\n"):
        """A script build queued straight in the database; its id."""
        sha1 = self.stored(content, "build.sh", restricted=private)

        def queue(store):
            return Q.request_build(
                store, build_type="script", processor="amd64",
                now=self.now(), build_args={"script": "build.sh"},
                filemap={"build.sh": sha1}, private=private,
                requester=requester)
        return self.transactor.run_blocking(queue)

    def finish_build(self, job_id, log=b"the log\n", files=None,
                     private=False):
        """End build ``job_id`` FULLYBUILT with ``log`` and result files
        as the master stores them."""
        from lp_services.buildmaster.enums import BuildStatus

        def finish(store):
            cursor = raw_cursor(store)
            cursor.execute("UPDATE build_queue SET builder = "
                           "(SELECT id FROM builder LIMIT 1), build_cookie "
                           "= 'c%s' WHERE job = %s", (job_id, job_id))
            cursor.execute("UPDATE job SET status = 1, lease_holder = 't', "
                           "lease_expires = now() + interval '1 hour', "
                           "date_started = now() WHERE id = %s", (job_id,))
            log_row = self.file_store.add(store, "build.log",
                                          io.BytesIO(log),
                                          restricted=private)
            rows = [(name, self.file_store.add(
                store, name, io.BytesIO(content), restricted=private).id)
                for name, content in (files or {}).items()]
            Q.finish_build(cursor, job_id, "c%s" % job_id, self.now(),
                           BuildStatus.FULLYBUILT, log_id=log_row.id,
                           files=rows)
            return log_row.sha1
        return self.transactor.run_blocking(finish)

    # -- HTTP ----------------------------------------------------------------

    async def http(self, method, path, token=None, body=None, raw=None,
                   headers=None):
        """(status, headers, body bytes) of ``method path``; ``token`` a
        name in ``self.tokens`` (or a literal token with ``lp_``)."""
        all_headers = Headers(headers or {})
        if token is not None:
            secret = self.tokens.get(token, token)
            all_headers.addRawHeader(b"authorization",
                                     ("Bearer " + secret).encode())
        producer = None
        if body is not None:
            raw = json.dumps(body).encode()
        if raw is not None:
            producer = FileBodyProducer(io.BytesIO(raw))
            all_headers.addRawHeader(b"content-type", b"application/json")
        response = await Agent(reactor).request(
            method.encode(), (self.base + path).encode(), all_headers,
            producer)
        return response.code, response.headers, await readBody(response)

    async def api(self, method, path, token=None, body=None, raw=None,
                  template=None, headers=None):
        """(status, JSON) of an API call, its shape checked against the
        description (``template``: the path with ids in braces, when it
        differs from ``path``)."""
        code, _, data = await self.http(method, "/api/v1" + path, token,
                                        body, raw, headers)
        value = json.loads(data) if data else None
        template = template or path.split("?")[0]
        if template in description()["paths"] and method.lower() in \
                description()["paths"][template]:
            check_shape(method, template, code, value)
        return code, value

    async def upload(self, content: bytes, token="alice", name="f"):
        sha1 = hashlib.sha1(content).hexdigest()
        code, value = await self.api(
            "PUT", "/files/%s?name=%s" % (sha1, name), token, raw=content,
            template="/files/{sha1}")
        return code, value, sha1


#: Tables a request may change, read whole to show nothing changed (a
#: token's last use is bookkeeping of the authentication, not a change).
SNAPSHOT_TABLES = ("job", "build_farm_job", "build_queue", "build_file",
                   "library_file", "change_log", "builder", "api_token",
                   "chroot")


def snapshot(mixin) -> dict:
    """Every row of SNAPSHOT_TABLES, to compare before and after."""
    found = {}
    for table in SNAPSHOT_TABLES:
        rows = mixin.query("SELECT (to_jsonb(t) - 'last_used')::text FROM %s t"
                           % table)
        found[table] = sorted(r[0] for r in rows)
    return found


def files_in(root: Path) -> set:
    """Paths of every file under a file store's root."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


RECIPE = {"name": "hello", "processor": "amd64",
          "script": "#!/bin/sh\necho hi > out.txt\n", "results": ["*.txt"]}
