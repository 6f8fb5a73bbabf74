"""Fetching a recipe's sources, only from addresses the farm allows.

A recipe names its sources by URL, and the recipe job fetches them from
inside the farm's network: left to itself that is a way into internal
services (a source at ``http://10.0.0.5/admin``, or a public URL that
redirects there), and a source that trickles a byte a second holds a job
runner's slot until the job's timeout. So :class:`SourceFetcher`

- resolves the host itself and refuses unless **every** address it
  resolves to is allowed: public (globally routable) addresses, plus the
  networks an operator lists in ``LP_RECIPE_SOURCES_ALLOW`` (internal
  mirrors). It then connects to the address it checked (never resolving
  the name again), so a DNS answer that changes between check and
  connection (DNS rebinding) cannot reach a refused address; TLS still
  checks the certificate against the URL's host name;
- follows at most :data:`MAX_REDIRECTS` redirects itself, checking each
  new location the same way;
- ends a transfer slower than a minimum rate (over each window of
  ``window`` seconds) or longer than an overall deadline shared by all of
  a job's sources (:class:`TransferGuard`);
- says in its errors what the farm did (refused, timed out, the numeric
  status), never what a server said (no reason phrase, no body, no hash
  of what was received, no address a name resolved to).

Proxy settings (``http_proxy``) are not used: the address checked must be
the address connected to.
"""

import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from lp_services.job.registry import RetryableError, UserError

__all__ = [
    "ALLOW_ENV",
    "DEADLINE_ENV",
    "FetchLimits",
    "MAX_REDIRECTS",
    "MIN_RATE_ENV",
    "SourceFetcher",
    "SourceRefused",
    "SourceTooSlow",
    "SourceUnreachable",
    "TransferGuard",
    "address_allowed",
    "parse_allow_list",
]

#: Networks besides public addresses sources may come from (internal
#: mirrors): addresses or CIDR networks, separated by commas or spaces.
ALLOW_ENV = "LP_RECIPE_SOURCES_ALLOW"
#: Seconds all of one recipe job's sources may take together.
DEADLINE_ENV = "LP_RECIPE_SOURCES_DEADLINE"
#: Bytes per second a source must keep up, over each window.
MIN_RATE_ENV = "LP_RECIPE_SOURCES_MIN_RATE"

#: Redirects followed per source (browsers follow 20; a mirror needs 1-2).
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 1 << 16


class SourceRefused(UserError):
    """A source at an address the farm does not fetch from (not retried)."""


class SourceUnreachable(RetryableError):
    """A source could not be fetched now; the job may try again."""


class SourceTooSlow(SourceUnreachable):
    """A source slower than the minimum rate, or past the deadline."""


@dataclass(frozen=True)
class FetchLimits:
    """How long and how slowly sources may be fetched."""

    #: Seconds all of one job's sources may take together: half the recipe
    #: job's 1,800 s timeout, so a job that hits it still ends cleanly.
    deadline: float = 900.0
    #: Bytes per second over each window: 64 KiB/s fetches the largest
    #: source (2 GiB) in about nine hours, so no honest mirror is near it,
    #: while a trickle is ended within one window.
    min_rate: float = 65536.0
    #: Seconds per rate window, and the longest a read may wait for data.
    window: float = 30.0

    @classmethod
    def from_environ(cls, environ=None) -> "FetchLimits":
        """The limits, with ``LP_RECIPE_SOURCES_DEADLINE`` and
        ``LP_RECIPE_SOURCES_MIN_RATE`` overriding the defaults.

        :raises ValueError: a value that is not a positive number, naming
            the setting.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for name, field in ((DEADLINE_ENV, "deadline"),
                            (MIN_RATE_ENV, "min_rate")):
            raw = environ.get(name)
            if raw is None or not raw.strip():
                continue
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value > 0 or value == float("inf"):
                raise ValueError("%s must be a positive number, not %r"
                                 % (name, raw))
            values[field] = value
        return cls(**values)


def parse_allow_list(text: str | None) -> tuple:
    """``LP_RECIPE_SOURCES_ALLOW``'s networks.

    :raises ValueError: an entry that is not an address or network,
        naming it.
    """
    networks = []
    for entry in (text or "").replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError("%s: %r is not an IP address or network"
                             % (ALLOW_ENV, entry)) from None
    return tuple(networks)


def address_allowed(address: str, allowed=()) -> bool:
    """Whether sources may come from ``address``: a public unicast
    address, or one in an ``allowed`` network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class TransferGuard:
    """The deadline and minimum rate of one job's sources.

    :param now: a monotonic clock in seconds (``time.monotonic``; tests
        pass ``task.Clock().seconds``).
    """

    def __init__(self, limits: FetchLimits, now=time.monotonic):
        self.limits = limits
        self.now = now
        self.ends = now() + limits.deadline
        self._mark = None

    def start(self):
        """A transfer starts: its rate is measured from here."""
        self.check_deadline()
        self._mark = (self.now(), 0)
        self.total = 0

    def check_deadline(self):
        if self.now() > self.ends:
            raise SourceTooSlow("sources took longer than the %g s deadline"
                                % self.limits.deadline)

    def received(self, count: int):
        """``count`` more bytes arrived; raise if the transfer is past the
        deadline or slower than the minimum rate over the last window."""
        self.total += count
        self.check_deadline()
        when, mark = self._mark
        elapsed = self.now() - when
        if elapsed >= self.limits.window:
            if self.total - mark < self.limits.min_rate * elapsed:
                raise SourceTooSlow(
                    "slower than the minimum %g bytes/s over %g s"
                    % (self.limits.min_rate, elapsed))
            self._mark = (self.now(), self.total)

    def read_timeout(self) -> float:
        """The longest one read may wait: a window, or what is left."""
        return max(0.001, min(self.limits.window, self.ends - self.now()))


def _connect_any(addresses, port, timeout):
    """A socket to the first of ``addresses`` (all checked) that answers."""
    error = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as failed:
            error = failed
    raise error


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to the host named in the URL, at the addresses that were
    checked (never resolved again)."""

    def __init__(self, host, port, addresses, timeout):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self):
        self.sock = _connect_any(self.addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS at the checked addresses; the certificate is checked against
    the URL's host name (SNI too)."""

    def __init__(self, host, port, addresses, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self.addresses = addresses
        self.tls = context

    def connect(self):
        sock = _connect_any(self.addresses, self.port, self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class _GuardedReader:
    """A response as a stream for ``FileStore.put_stream``: each read
    takes what has arrived (``read1``) and reports it to the guard."""

    def __init__(self, response, connection, guard):
        self.response, self.connection, self.guard = response, connection, guard

    def read(self, size=_CHUNK):
        if self.connection.sock is not None:
            self.connection.sock.settimeout(self.guard.read_timeout())
        chunk = self.response.read1(min(size, _CHUNK))
        self.guard.received(len(chunk))
        return chunk


class SourceFetcher:
    """Fetches sources into a file store under the farm's address policy
    and limits. See the module docstring.

    :param allowed: networks allowed besides public addresses.
    :param resolve: ``(host, port) -> [address]`` (the system resolver).
    :param now: a monotonic clock for the guard.
    """

    def __init__(self, allowed=(), limits: FetchLimits | None = None,
                 resolve=_resolve, now=time.monotonic,
                 tls: ssl.SSLContext | None = None):
        self.allowed = tuple(allowed)
        self.limits = limits or FetchLimits()
        self.guard = TransferGuard(self.limits, now)
        self.resolve = resolve
        self.tls = tls

    @classmethod
    def from_environ(cls, environ=None) -> "SourceFetcher":
        """A fetcher with the job runner's settings (see docs/recipes.md).

        :raises ValueError: a setting is wrong; the message names it.
        """
        environ = os.environ if environ is None else environ
        return cls(parse_allow_list(environ.get(ALLOW_ENV)),
                   FetchLimits.from_environ(environ))

    def fetch(self, url: str, store_stream):
        """Fetch ``url``; return ``store_stream(stream)``, which reads the
        body (``stream.read(n)``) while the guard watches.

        :raises SourceRefused: a refused address, scheme or redirect, or a
            4xx answer.
        :raises SourceUnreachable: no connection, a 5xx, a broken or too
            slow transfer (retryable).
        """
        response, connection = self._open(url)
        try:
            self.guard.start()
            return store_stream(_GuardedReader(response, connection,
                                               self.guard))
        except SourceTooSlow as error:
            raise SourceTooSlow("source %s: %s" % (url, error)) from None
        except socket.timeout:
            if self.guard.ends - self.guard.now() <= 0.01:
                # The read waited only for what was left of the deadline.
                raise SourceTooSlow("source %s: sources took longer than the "
                                    "%g s deadline"
                                    % (url, self.limits.deadline)) from None
            raise SourceTooSlow("source %s sent nothing for %g s"
                                % (url, self.limits.window)) from None
        except (OSError, http.client.HTTPException) as error:
            raise SourceUnreachable("source %s broke off: %s"
                                    % (url, _describe(error))) from None
        finally:
            connection.close()

    def _open(self, url):
        location = url
        for hop in range(MAX_REDIRECTS + 1):
            connection = self._connect(url, location, hop)
            try:
                target = urlsplit(location)
                path = target.path or "/"
                if target.query:
                    path += "?" + target.query
                connection.request("GET", path, headers={
                    "User-Agent": "lp-services", "Accept-Encoding": "identity"})
                response = connection.getresponse()
            except socket.timeout:
                connection.close()
                raise SourceTooSlow("source %s did not answer within %g s"
                                    % (url, self.limits.window)) from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise SourceUnreachable("source %s is unreachable: %s"
                                        % (url, _describe(error))) from None
            if response.status in _REDIRECTS:
                moved = response.getheader("Location")
                connection.close()
                if not moved:
                    raise SourceRefused("source %s redirected nowhere" % url)
                location = urljoin(location, moved)
                continue
            if response.status >= 500:
                connection.close()
                raise SourceUnreachable("source %s answered %d"
                                        % (url, response.status))
            if response.status != 200:
                connection.close()
                raise SourceRefused("source %s answered %d"
                                    % (url, response.status))
            return response, connection
        raise SourceRefused("source %s redirected more than %d times"
                            % (url, MAX_REDIRECTS))

    def _connect(self, url, location, hop):
        """A connection to ``location``'s host at a checked address."""
        via = "" if hop == 0 else " (redirected)"
        try:
            target = urlsplit(location)
            port = target.port
        except ValueError:
            raise SourceRefused("source %s%s: not a valid URL" % (url, via)) \
                from None
        if target.scheme not in ("http", "https") or not target.hostname:
            raise SourceRefused("source %s%s: only http and https URLs may be "
                                "fetched" % (url, via))
        host = target.hostname
        port = port or (443 if target.scheme == "https" else 80)
        try:
            self.guard.check_deadline()
        except SourceTooSlow as error:
            raise SourceTooSlow("source %s: %s" % (url, error)) from None
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise SourceUnreachable("source %s%s: cannot resolve %s: %s"
                                    % (url, via, host if hop == 0 else
                                       "the new location",
                                       _describe(error))) from None
        if not addresses or not all(address_allowed(a, self.allowed)
                                    for a in addresses):
            # A redirect's host came from a server: not repeated.
            raise SourceRefused(
                "source %s%s: %s is not a public address and not in %s; "
                "the farm does not fetch from it"
                % (url, via, host if hop == 0 else "the new location",
                   ALLOW_ENV))
        timeout = self.guard.read_timeout()
        if target.scheme == "https":
            tls = self.tls or ssl.create_default_context()
            return _PinnedHTTPS(host, port, addresses, timeout, tls)
        return _PinnedHTTP(host, port, addresses, timeout)


def _describe(error) -> str:
    """A local error's description: what the farm saw, not what a server
    sent (certificate errors and socket errors are the farm's own)."""
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.HTTPException):
        return "not a valid HTTP answer (%s)" % type(error).__name__
    return getattr(error, "strerror", None) or type(error).__name__
