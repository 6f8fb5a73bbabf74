"""The job-type registry, and the base class most types derive from.

Types register by name when their module is imported::

    from lp_services.job.registry import JobType, job_types

    class RecipeJobType(JobType):
        name = "recipe"
        transactional = True          # see lp_services.job.interfaces
        lease_seconds = 120
        timeout_seconds = 1800

        def run(self, data, context):
            context.cursor.execute(...)

    job_types.register(RecipeJobType())

A runner started with ``--module lp_services.buildmaster.recipe`` imports
that module in itself and in each of its children, so both sides agree on
what ``recipe`` means.
"""

import importlib
import re

from zope.interface import implementer
from zope.interface.verify import verifyObject

from lp_services.job.interfaces import IJobType
from lp_services.job.policy import exponential_backoff

__all__ = [
    "BUILTIN_MODULE",
    "DEFAULT_MODULES",
    "DuplicateJobType",
    "InvalidJobData",
    "JobType",
    "JobTypeRegistry",
    "RESERVED_NAMES",
    "RetryableError",
    "UnknownJobType",
    "UserError",
    "job_types",
    "load_modules",
]

#: Names no native type may take: builds are dispatched by the buildmaster.
RESERVED_NAMES = frozenset({"build"})

#: The module holding the built-in types (noop, sleep, http-notify,
#: library-gc); always loaded by runners and the CLI.
BUILTIN_MODULE = "lp_services.job.builtin"

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class RetryableError(Exception):
    """Raise from a job to have it retried (if attempts remain)."""


class UserError(Exception):
    """Raise from a job whose request is wrong: FAILED, never retried."""


class InvalidJobData(UserError):
    """A job's data that its type cannot run."""


class UnknownJobType(LookupError):
    """No registered job type has that name."""

    def __init__(self, name, known=()):
        self.name = name
        hint = (" (known: %s)" % ", ".join(sorted(known))) if known else ""
        super().__init__("unknown job type %r%s" % (name, hint))


class DuplicateJobType(ValueError):
    """A second type tried to register under a taken name."""


@implementer(IJobType)
class JobType:
    """Defaults for a job type. See :class:`IJobType`."""

    name: str = None
    retryable_errors: tuple = (RetryableError,)
    user_errors: tuple = (UserError,)
    max_retries: int = 3
    #: Renewed every lease_seconds / 3 while the job runs.
    lease_seconds: float = 60.0
    timeout_seconds: float = 600.0
    #: 1 GiB of address space: generous for Python, fatal for a leak.
    memory_limit: int | None = 1 << 30
    transactional: bool = False
    #: See IJobType.submittable: off unless a type says it is harmless.
    submittable: bool = False
    #: 5 s, 10 s, 20 s ... at most an hour, +-20 %.
    _backoff = staticmethod(exponential_backoff())

    def retry_delay(self, attempt: int) -> float:
        """See :meth:`IJobType.retry_delay`."""
        return self._backoff(attempt)

    def validate(self, data) -> None:
        """See :meth:`IJobType.validate`. Default: any JSON object."""
        if not isinstance(data, dict):
            raise InvalidJobData("%s job data must be a JSON object, not %s"
                                 % (self.name, type(data).__name__))

    def run(self, data, context) -> None:
        """See :meth:`IJobType.run`."""
        raise NotImplementedError


class JobTypeRegistry:
    """Job types by name."""

    def __init__(self):
        self._types = {}

    def register(self, job_type) -> None:
        """Add ``job_type`` (providing IJobType) under its name.

        :raises ValueError: a reserved or malformed name.
        :raises DuplicateJobType: a different type holds the name already
            (registering the same object twice is harmless).
        """
        verifyObject(IJobType, job_type)
        name = job_type.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("invalid job type name %r" % (name,))
        if name in RESERVED_NAMES:
            raise ValueError("job type name %r is reserved: builds are "
                             "dispatched by the buildmaster" % name)
        existing = self._types.get(name)
        if existing is not None and existing is not job_type:
            raise DuplicateJobType("job type %r is already registered" % name)
        self._types[name] = job_type

    def unregister(self, name: str) -> None:
        """Remove a type (tests)."""
        self._types.pop(name, None)

    def get(self, name: str):
        """The type called ``name``.

        :raises UnknownJobType: no such type.
        """
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, self._types) from None

    def __contains__(self, name) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._types)


#: The process-wide registry that type modules register into.
job_types = JobTypeRegistry()


#: Modules every runner and the CLI load: the built-in types and the
#: ``recipe`` type (which checks a recipe and queues its build).
DEFAULT_MODULES = (BUILTIN_MODULE, "lp_services.filestore.gc",
                   "lp_services.recipes.recipe")


def load_modules(modules=()) -> None:
    """Import the default types' modules and each of ``modules`` (which
    register their types into :data:`job_types` on import)."""
    for module in (*DEFAULT_MODULES, *modules):
        importlib.import_module(module)
