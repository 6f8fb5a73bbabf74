"""The XML-RPC face of the agent: translates calls, nothing else.

Each ``xmlrpc_*`` method checks the argument count, calls the
:class:`~lp_services.slave.agent.Agent` method of the same meaning and
turns an :class:`~lp_services.slave.errors.RequestRefused` into
``Fault(error.fault_code, message)`` (codes in :data:`~lp_services.slave.
errors.FAULT_CODES`).
"""

import functools
from xmlrpc.client import Binary, Fault

from twisted.internet import defer
from twisted.web import xmlrpc

from lp_services.slave.errors import RequestRefused, BadArguments

__all__ = ["AgentXMLRPC"]


def _call(*names, optional: int = 0):
    """Check ``len(args)`` against ``names``; map RequestRefused to Fault."""
    required = len(names) - optional

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args):
            if not required <= len(args) <= len(names):
                expected = ("%d" % len(names) if not optional else
                            "%d to %d" % (required, len(names)))
                raise Fault(BadArguments.fault_code,
                            "%s() takes %s arguments (%s), got %d" % (
                                method.__name__.removeprefix("xmlrpc_"),
                                expected, ", ".join(names) or "none",
                                len(args)))
            try:
                result = method(self, *args)
            except RequestRefused as e:
                raise Fault(e.fault_code, str(e)) from None
            if isinstance(result, defer.Deferred):
                result.addErrback(_fault)
            return result
        return wrapper
    return decorate


def _lease_of(request):
    """(master, epoch) from the request's query, or (None, None)."""
    master = request.args.get(b"master", [None])[0]
    epoch = request.args.get(b"lease", [None])[0]
    try:
        epoch = int(epoch) if epoch is not None else None
    except ValueError:
        epoch = ValueError  # refused below: never "no lease"
    if master is not None:
        master = master.decode("utf-8", "replace")[:200]
    return master, epoch


def _fault(failure):
    failure.trap(RequestRefused)
    raise Fault(failure.value.fault_code, str(failure.value))


class AgentXMLRPC(xmlrpc.XMLRPC):
    """The ``/rpc`` resource (PROTOCOL.md's methods)."""

    def __init__(self, agent):
        super().__init__(allowNone=True, useDateTime=False)
        self.agent = agent
        #: (master, epoch) of the request being answered (its query).
        self._lease = (None, None)

    def render_POST(self, request):
        """Note the caller's lease (``?master=…&lease=N``; absent from
        launchpad-buildd's callers) for the duration of the call: the
        procedure runs within this call, before any other request."""
        self._lease = _lease_of(request)
        try:
            return super().render_POST(request)
        finally:
            self._lease = (None, None)

    def _check_lease(self, method):
        master, epoch = self._lease
        if epoch is ValueError:
            raise Fault(BadArguments.fault_code,
                        "the lease in the query must be an integer")
        try:
            self.agent.check_lease(method, master, epoch)
        except RequestRefused as e:
            raise Fault(e.fault_code, str(e)) from None

    def xmlrpc_echo(self, *args):
        """Return the arguments."""
        return self.agent.echo(*args)

    @_call()
    def xmlrpc_info(self):
        """``[protocol version, arch tag, build types]``."""
        return self.agent.info()

    @_call()
    def xmlrpc_status(self):
        """The status dict; ``logtail`` as Binary."""
        status = self.agent.status()
        if "logtail" in status:
            status["logtail"] = Binary(status["logtail"])
        return status

    @_call("sha1", "url", "username", "password", optional=2)
    def xmlrpc_ensurepresent(self, sha1, url, username=None, password=None):
        """``[present, info]``."""
        return self.agent.ensure_present(sha1, url, username, password)

    @_call("build_id", "build_type", "chroot_sha1", "filemap", "args")
    def xmlrpc_build(self, build_id, build_type, chroot_sha1, filemap, args):
        """Start a build."""
        self._check_lease("build")
        return self.agent.build(build_id, build_type, chroot_sha1, filemap,
                                args)

    @_call()
    def xmlrpc_abort(self):
        """Abort the build."""
        self._check_lease("abort")
        return self.agent.abort()

    @_call()
    def xmlrpc_clean(self):
        """Clean after the build."""
        self._check_lease("clean")
        return self.agent.clean()
