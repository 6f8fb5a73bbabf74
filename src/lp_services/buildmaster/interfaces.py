"""Interfaces of the buildmaster."""

from zope.interface import Attribute, Interface

__all__ = ["IAgentClient"]


class IAgentClient(Interface):
    """The master's view of one builder agent (see PROTOCOL.md).

    Every method returns a Deferred. A call that cannot reach the agent,
    times out, or gets an answer that is not what the protocol promises
    fails with :class:`lp_services.buildmaster.agentclient.AgentError` (or a
    subclass); the scanner turns that into failure handling.
    """

    url = Attribute("The agent's base URL (http://host:port).")

    def echo(*args):
        """Fire with ``list(args)`` echoed back."""

    def info():
        """Fire with ``[protocol_version, arch_tag, [build types]]``."""

    def status():
        """Fire with an :class:`AgentStatus`."""

    def ensurepresent(sha1, url, username, password):
        """Have the agent fetch ``url`` into its cache unless it holds
        ``sha1``; fire with ``(present, info)``."""

    def build(build_id, build_type, chroot_sha1, filemap, args):
        """Start a build; fire with ``(status string, info)``."""

    def abort():
        """Ask a BUILDING agent to abort; fire with its status string."""

    def clean():
        """Ask a WAITING agent to clean up; fire with its status string."""

    def fetch_file(sha1, destination):
        """Fetch ``/filecache/<sha1>`` into the open binary file
        ``destination`` and verify the content's sha1; fire with the size.
        ``sha1`` may be ``"buildlog"`` for the current log (not verified)."""
