"""The buildmaster's HTTP site: the status pages, the file store for agents
and people, and a JSON API.

- ``/``, ``/builds/<id>``, ``/jobs/<id>``, ``/work``, ``/metrics``: the
  read-only status site (:mod:`lp_services.web.site`).
- ``/files/<sha1>[/<name>]``: stored files (chroots, sources, logs,
  results); see :mod:`lp_services.filestore.web`.
- ``/api/builds/<id>``: one build as JSON, with links to its log and files.
"""

import json

from twisted.web import resource, server
from twisted.logger import Logger

from lp_services.filestore.web import FileStoreResource

__all__ = ["build_site"]


class _Builds(resource.Resource):
    log = Logger()

    def __init__(self, farm):
        super().__init__()
        self.farm = farm

    def getChild(self, name, request):
        try:
            return _Build(self.farm, int(name))
        except ValueError:
            return resource.NoResource("not a build id")


class _Build(resource.Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, farm, job_id):
        super().__init__()
        self.farm, self.job_id = farm, job_id

    def render_GET(self, request):
        from lp_services.buildmaster import queue as Q
        from lp_services.buildmaster.farm import transaction

        d = self.farm.transactor.run(transaction(Q.show_build, self.job_id,
                                          self.farm.now()))

        def done(info):
            base = self.farm.config.files_url.rstrip("/")
            if info.get("log"):
                info["log"]["url"] = "%s/files/%s/%s" % (
                    base, info["log"]["sha1"], info["log"]["filename"])
            for f in info["files"]:
                f["url"] = "%s/files/%s/%s" % (base, f["sha1"], f["filename"])
            request.setHeader(b"Content-Type", b"application/json")
            request.write(json.dumps(info, indent=2, sort_keys=True,
                                     default=str).encode("utf-8"))
            request.finish()

        def failed(failure):
            request.setResponseCode(
                404 if failure.check(Q.BuildNotFound) else 500)
            request.setHeader(b"Content-Type", b"text/plain")
            request.write(failure.getErrorMessage().encode("utf-8") + b"\n")
            request.finish()
        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


def build_site(farm, manager) -> server.Site:
    """The buildmaster's site."""
    from urllib.parse import quote

    from lp_services.web.site import make_status_resource

    def file_url(sha1, filename):
        # Read per call: the base URL is settled when the port is bound.
        return "%s/files/%s/%s" % (farm.config.files_url.rstrip("/"), sha1,
                                   quote(filename))

    root = make_status_resource(farm.transactor, file_url=file_url,
                                clock=farm.clock, file_store=farm.file_store)
    root.putChild(b"files", FileStoreResource(farm.file_store))
    api = resource.Resource()
    api.putChild(b"builds", _Builds(farm))
    root.putChild(b"api", api)
    return server.Site(root)
