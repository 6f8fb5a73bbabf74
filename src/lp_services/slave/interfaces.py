"""Interfaces of the agent's plug-in points: build managers and backends.

A build type is a class providing :class:`IBuildManagerFactory` (its
``name`` is what ``build()`` names and ``info()`` lists); an instance runs
one build and provides :class:`IBuildManager`. A backend provides
:class:`IBackend` and hands out one :class:`ISandbox` per build: the
``sandbox`` backend uses bubblewrap; a virtual-machine backend plugs in
beside it with the same interfaces.
"""

from zope.interface import Attribute, Interface

__all__ = [
    "IBackend",
    "IBuildManager",
    "IBuildManagerFactory",
    "ISandbox",
]


class IBuildManagerFactory(Interface):
    """A build type: the class registered under ``name``."""

    name = Attribute("The build type's name, as build() receives it.")

    def validate_args(args):
        """Check the build type's own ``args`` before any work.

        :raises lp_services.slave.errors.BadArguments: with a clear message.
        """

    def needed_files(args):
        """Names in ``args`` that must be keys of the build's filemap
        (called after :meth:`validate_args`)."""

    def __call__(context):
        """Make the manager of one build (an :class:`IBuildManager`) from a
        :class:`lp_services.slave.manager.BuildContext`."""


class IBuildManager(Interface):
    """Runs one build, step by step, into its log."""

    def start():
        """Start the build; return a Deferred firing with a
        :class:`lp_services.slave.manager.BuildOutcome`. It never errbacks
        for the build's own failures (those are outcomes)."""

    def abort():
        """Stop the build as soon as possible: kill every process of it.
        The Deferred from :meth:`start` then fires (its status is ignored:
        the agent records ABORTED)."""

    def destroy():
        """Kill anything of the build still running and release what it
        holds (sandbox, cgroups); idempotent. Called by clean()."""


class IBackend(Interface):
    """Where builds run (a sandbox on this machine, a virtual machine...)."""

    name = Attribute("The backend's configuration name, e.g. 'sandbox'.")

    def sandbox(build_id, root, work):
        """The :class:`ISandbox` of one build: ``root`` (a Path) is the
        unpacked chroot, mounted read-only as ``/``; ``work`` (a Path) is
        the writable build directory, mounted as ``/work``."""

    def stop():
        """Kill every build's processes (the agent is stopping)."""


class ISandbox(Interface):
    """One build's confinement."""

    def run(argv, output, timeout):
        """Run ``argv`` inside; ``output(bytes)`` receives stdout and
        stderr as they come. Return a Deferred firing with a
        :class:`lp_services.slave.sandbox.RunResult`; after it fires no
        process started by ``argv`` is alive. ``timeout`` is wall-clock
        seconds."""

    def kill():
        """Kill every process running inside (abort); idempotent."""

    def destroy():
        """Kill anything left and release every resource (cgroups);
        idempotent; after it returns nothing of the build runs."""
