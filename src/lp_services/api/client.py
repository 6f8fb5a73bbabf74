"""The API's client, for the command line's remote mode (``lp-services
--server URL``). It speaks HTTP with ``requests`` (well kept, blocking,
which a command line wants) and turns every refusal into
:class:`ApiClientError` carrying the server's one-line reason."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["ApiClient", "ApiClientError", "read_token_file"]

#: Seconds to wait for the server to answer a call (a log's long poll
#: adds its own wait).
TIMEOUT = 60


class ApiClientError(Exception):
    """A refused or failed call: ``status`` (None when the server was not
    reached) and the server's message."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


def read_token_file(path: str) -> str:
    """The token in file ``path`` (its first line).

    :raises ApiClientError: unreadable or empty.
    """
    try:
        token = Path(path).read_text().strip().split("\n")[0].strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ApiClientError(None, "cannot read the token file %s: %s"
                             % (path, error)) from None
    if not token:
        raise ApiClientError(None, "the token file %s is empty" % path)
    return token


class ApiClient:
    """Calls to one server's ``/api/v1/`` with one token (or none)."""

    def __init__(self, server: str, token: str | None = None, session=None):
        import requests

        self.base = server.rstrip("/") + "/api/v1"
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = "Bearer " + token

    def call(self, method: str, path: str, json=None, data=None,
             params=None, timeout: float = TIMEOUT):
        """The answer's JSON (None for an empty answer).

        :raises ApiClientError: a 4xx or 5xx answer, or no answer.
        """
        import requests

        try:
            response = self.session.request(
                method, self.base + path, json=json, data=data,
                params=params, timeout=timeout)
        except requests.RequestException as error:
            raise ApiClientError(None, "cannot reach %s: %s"
                                 % (self.base, error)) from None
        try:
            value = response.json() if response.content else None
        except ValueError:
            value = None
        if response.status_code >= 400:
            message = (value or {}).get("error") if isinstance(value, dict) \
                else None
            raise ApiClientError(response.status_code, "%s (HTTP %d)" % (
                message or response.reason, response.status_code))
        return value

    def get(self, path, **params):
        return self.call("GET", path, params={k: v for k, v in
                                              params.items()
                                              if v is not None})

    def post(self, path, body=None):
        return self.call("POST", path, json=body if body is not None else {})

    def upload(self, path: Path, name: str | None = None) -> str:
        """Upload the file at ``path`` (skipped by the server when this
        token uploaded the same content before); its sha1."""
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha1 = digest.hexdigest()
        with open(path, "rb") as f:
            self.call("PUT", "/files/%s" % sha1, data=f,
                      params={"name": name or Path(path).name},
                      timeout=max(TIMEOUT, 600))
        return sha1
