"""Property-based fuzzing of /api/v1/ (hypothesis) over real HTTP: random
methods, paths (the described ones with random ids, names and segments,
and others), query strings, bodies (JSON of every shape, and bytes) and
headers (tokens of every role, bad ones, other schemes). Every answer is
2xx or 4xx, never 5xx, its JSON has the described shape, and a refused
request (4xx) leaves the database and the file store as they were."""

import collections
import hashlib
import http.client
import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from lp_services.api.openapi import OPERATIONS
from lp_services.testing.fuzz import run_property
from tests.api.support import (
    RECIPE, ROLES, SiteMixin, check_shape, files_in, snapshot)

_ids = st.sampled_from(["1", "2", "3", "0", "-1", "99999999999999999999",
                        "x", "", "%00"]) | st.integers(0, 10).map(str)
_names = st.sampled_from(["b1", "alice", "nosuch", "..", "%2F", ""]) \
    | st.text(max_size=12)
_sha1s = st.sampled_from(["0" * 40, "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                          "ZZ", ""]) | st.text(max_size=41)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
_field_names = st.sampled_from(
    ["build_type", "processor", "files", "script", "args", "series",
     "virtualized", "urgency", "after", "resources", "max_retries",
     "private", "pocket", "component", "recipe", "priority", "type", "data",
     "score", "mode", "reason", "name", "role", "expires"])
_bodies = st.dictionaries(_field_names, _json, max_size=6).map(json.dumps) \
    | st.sampled_from([json.dumps({"type": "noop"}),
                       json.dumps({"recipe": RECIPE}),
                       json.dumps({"mode": "manual"}),
                       json.dumps({"score": 3}),
                       json.dumps({"name": "fz", "role": "admin"})]) \
    | _json.map(json.dumps) | st.binary(max_size=64).map(
        lambda b: b.decode("latin-1"))
_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD",
                            "OPTIONS"])
_auth = st.sampled_from(sorted(ROLES) + [None, "bad", "basic", "empty"])
_query = st.lists(st.tuples(
    st.sampled_from(["limit", "before", "offset", "wait", "kind", "status",
                     "name", "type"]) | st.text(max_size=5),
    st.sampled_from(["0", "1", "5", "31", "-1", "x", "build", "FAILED", ""])
    | st.text(max_size=5)), max_size=3)


def _fill(template, ids, names, sha1s):
    return (template.replace("{job_id}", ids).replace("{name}", names)
            .replace("{sha1}", sha1s))


class ApiFuzzTests(SiteMixin, TestCase):

    timeout = 900

    def setUp(self):
        super().setUp()
        self.add_chroot()
        self.ids = [self.queue_build(requester="alice"),
                    self.queue_build(requester="bob", private=True,
                                     content=b"p\n")]
        sha1 = self.stored(b"#!/bin/sh\necho fuzz\n", "build.sh",
                           restricted=True, uploader="alice")
        self.examples = {
            "/builds": {"build_type": "script", "processor": "amd64",
                        "files": {"build.sh": sha1}, "script": "build.sh"},
            "/recipes": {"recipe": RECIPE},
            "/jobs": {"type": "noop"},
            "/work/{job_id}/rescore": {"score": 5},
            "/builders/{name}/mode": {"mode": "manual"},
            "/tokens": {"name": "fz", "role": "submitter"},
        }
        self.outcomes = collections.Counter()

    def fuzz(self, examples: int):
        port = self.port.getHost().port
        # Mostly described operations with bodies near valid ones (so the
        # fuzz reaches the code behind validation), some anything at all.
        operations = st.sampled_from([(m.upper(), p) for m, p, *_ in
                                      OPERATIONS])
        described = st.tuples(operations, _ids | st.sampled_from(
            [str(i) for i in self.ids]), _names, _sha1s, st.booleans()).map(
                lambda t: (t[0][0], t[0][1], _fill(
                    t[0][1], t[1], quote(t[2], safe=""),
                    quote(t[3], safe="")), t[4]))
        anything = st.tuples(_methods, st.lists(_names, max_size=3)).map(
            lambda t: (t[0], None, "/" + "/".join(
                quote(p, safe="") for p in t[1]), False))

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(request=described | described | described | anything,
               query=_query, body=st.none() | _bodies,
               near=st.sampled_from(["valid", "mutated", "random"]),
               mutation=st.tuples(_field_names, _json),
               auth=_auth | st.sampled_from(sorted(ROLES)))
        def prop(request, query, body, near, mutation, auth):
            method, template, target, matching_sha1 = request
            if template is not None and near != "random":
                example = dict(self.examples.get(template, {}))
                if near == "mutated":
                    example[mutation[0]] = mutation[1]
                body = json.dumps(example) if example else body
            raw = None if body is None else body.encode("latin-1", "replace")
            if template == "/files/{sha1}" and matching_sha1:
                # An upload whose content hashes to its path.
                raw = raw or b""
                target = "/files/" + hashlib.sha1(raw).hexdigest()
            url = "/api/v1" + target
            if query:
                url += "?" + "&".join(quote(k, safe="") + "=" +
                                      quote(v, safe="") for k, v in query)
            headers = {}
            if auth in ROLES:
                headers["Authorization"] = "Bearer " + self.tokens[auth]
            elif auth == "bad":
                headers["Authorization"] = "Bearer lp_nonsense"
            elif auth == "basic":
                headers["Authorization"] = "Basic YTpi"
            elif auth == "empty":
                headers["Authorization"] = ""
            before = snapshot(self), files_in(self.file_store.root)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request(method, url, body=raw, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            what = (method, url, body, auth, response.status, data[:300])
            self.outcomes[response.status // 100] += 1
            assert response.status < 500, what
            if response.status >= 400:
                after = snapshot(self), files_in(self.file_store.root)
                assert after == before, what
            if data and method != "HEAD" and template is not None:
                check_shape(method, template, response.status,
                            json.loads(data))

        return run_property(prop)

    def test_fuzz(self):
        """400 random requests: see the module docstring. Some must be
        accepted and some refused, or the fuzz explored nothing."""
        def check(_):
            self.assertTrue(self.outcomes[2] and self.outcomes[4],
                            self.outcomes)
        return self.fuzz(400).addCallback(check)
