"""The built-in job types: noop, sleep, http-notify and library-gc.

Importing this module registers them in
:data:`lp_services.job.registry.job_types`.
"""

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit


from lp_services.job.registry import (
    InvalidJobData, JobType, RetryableError, UserError, job_types)

__all__ = [
    "HTTPNotifyJobType",
    "NoopJobType",
    "SleepJobType",
]


class NoopJobType(JobType):
    """Does nothing: smoke tests and benchmarks."""

    name = "noop"
    max_retries = 0
    timeout_seconds = 60.0
    #: Harmless whatever its data: any submitter may queue it.
    submittable = True

    def run(self, data, context):
        return None


class SleepJobType(JobType):
    """Sleeps ``{"seconds": N}`` (0 <= N <= 86400)."""

    name = "sleep"
    max_retries = 0
    timeout_seconds = 86400.0 + 60

    def validate(self, data):
        super().validate(data)
        seconds = data.get("seconds")
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                or not 0 <= seconds <= 86400):
            raise InvalidJobData(
                'sleep needs {"seconds": N} with 0 <= N <= 86400, got %r'
                % (seconds,))

    def run(self, data, context):
        time.sleep(data["seconds"])


class HTTPError5xx(RetryableError):
    """The server failed; it may succeed later."""


class HTTPNotifyJobType(JobType):
    """POST ``{"url": ..., "payload": ...}`` as JSON.

    2xx (and 3xx, which are not followed) succeed; 5xx, timeouts and
    connection errors are retried with back-off; 4xx are user errors.
    Optional ``"timeout"`` (seconds per request, default 10) and
    ``"headers"`` (string to string).
    """

    name = "http-notify"
    max_retries = 5
    timeout_seconds = 120.0

    def validate(self, data):
        super().validate(data)
        url = data.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in (
                "http", "https") or not urlsplit(url).hostname:
            raise InvalidJobData("http-notify needs an http(s) \"url\", got %r"
                                 % (url,))
        if "payload" not in data:
            raise InvalidJobData('http-notify needs a "payload"')
        timeout = data.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout <= 110:
            raise InvalidJobData("http-notify timeout must be in (0, 110]")
        headers = data.get("headers", {})
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in headers.items()):
            raise InvalidJobData("http-notify headers must map strings to strings")

    def run(self, data, context):
        body = json.dumps(data["payload"]).encode("utf-8")
        headers = {"Content-Type": "application/json",
                   "User-Agent": "lp-services-jobrunner",
                   "X-LP-Job-Id": str(context.job_id)}
        headers.update(data.get("headers", {}))
        request = urllib.request.Request(
            data["url"], data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=data.get("timeout", 10)) as response:
                response.read(1 << 16)
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                return
            if error.code >= 500:
                raise HTTPError5xx("%s answered %d %s" % (
                    data["url"], error.code, error.reason)) from None
            raise UserError("%s answered %d %s" % (
                data["url"], error.code, error.reason)) from None
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise RetryableError("cannot reach %s: %s" % (data["url"], reason)) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


for _type in (NoopJobType(), SleepJobType(), HTTPNotifyJobType()):
    job_types.register(_type)
