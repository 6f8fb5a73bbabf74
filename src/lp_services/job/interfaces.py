"""The interfaces of native job types and of what a job sees while it runs.

A *job type* is a named kind of native work (``noop``, ``http-notify``,
``recipe``...). Types register in a :class:`~lp_services.job.registry.
JobTypeRegistry` under their name; a runner claims only the types its
registry holds, and :func:`lp_services.job.enqueue.enqueue` refuses names it
does not hold. The name ``build`` is reserved: builds are ``job`` rows too,
but the buildmaster dispatches them and no runner ever claims one.

Where a job runs
----------------
The runner (a Twisted process) never runs job code. It claims rows, then
hands each job to one of its long-lived child processes (``python -m
lp_services.job.worker``) as ``(job id, type name, data, attempt, lease
holder)``. The child imports the same type modules as its parent, looks the
type up by name and calls :meth:`IJobType.run` there, under the type's
memory limit; the parent enforces the timeout by killing the child.
Anything given to or returned from a child must be JSON.

Database access from a job
--------------------------
A child knows the database URL (from its environment, never its command
line) and a job reaches it through :attr:`IJobContext.database_url` /
:meth:`IJobContext.connect` — a psycopg2 connection kept open by the child
across jobs. There are two ways to use it:

* ``transactional = False`` (the default): the job manages its own
  transactions and commits its own work; the parent records the outcome
  afterwards in a separate statement (batched with other jobs').
* ``transactional = True``: the child opens one transaction, passes its
  cursor as :attr:`IJobContext.cursor`, calls ``run``, and — only if ``run``
  returned — completes the job *in that same transaction* with the guarded
  ``UPDATE job SET status = COMPLETED ... WHERE status = RUNNING AND
  lease_holder = <this runner>``, then commits. The job's own writes and
  its completion commit together or not at all: if the lease was lost
  meanwhile (the job was cancelled, or reclaimed after this runner was
  presumed dead) everything rolls back. ``run`` must not commit. Failures
  roll back and are recorded by the parent as usual. A ``recipe`` type
  that must write its results and complete atomically uses this.
"""

from zope.interface import Attribute, Interface

__all__ = ["IJobContext", "IJobType", "IRunnableJob"]


class IJobType(Interface):
    """A kind of native job: its policy, and the code that runs it."""

    name = Attribute(
        "The job_type stored in the job table: lower case, matching "
        "^[a-z][a-z0-9_.-]{0,63}$; never 'build'.")

    retryable_errors = Attribute(
        "A tuple of exception classes meaning 'try again later': the job "
        "goes back to WAITING with scheduled_start = now + "
        "retry_delay(attempt) while attempts remain, else FAILED.")

    user_errors = Attribute(
        "A tuple of exception classes meaning 'this job is wrong': FAILED "
        "with the exception's message, never retried. "
        "lp_services.job.registry.UserError and InvalidJobData always are.")

    max_retries = Attribute(
        "Default job.max_retries for jobs of this type (enqueue may "
        "override): how many times a retryable failure is retried; the "
        "job runs at most max_retries + 1 times.")

    lease_seconds = Attribute(
        "How long a claim lasts without renewal. The runner renews leases "
        "of running jobs (heartbeat); a job whose runner died is claimed "
        "again this long after its last renewal.")

    timeout_seconds = Attribute(
        "How long one attempt may run before its child is killed; a "
        "timeout counts as a retryable failure.")

    memory_limit = Attribute(
        "Bytes of address space (RLIMIT_AS) a child may use while running "
        "a job of this type, or None for no limit. A job that exceeds it "
        "fails (MemoryError is not retried) and its child is replaced.")

    submittable = Attribute(
        "Whether a submitter's token may queue jobs of this type through "
        "the API (POST /api/v1/jobs). False unless the type is harmless "
        "whatever its data says: operators queue any type.")

    transactional = Attribute(
        "Whether run() receives an open transaction (context.cursor) that "
        "also completes the job; see the module docstring.")

    def retry_delay(attempt):
        """Seconds to wait before running again after failed attempt
        ``attempt`` (1 for the first run). A plain function of the attempt;
        see lp_services.job.policy."""

    def validate(data):
        """Check a job's data (decoded JSON) before it is enqueued and again
        before it runs; raise lp_services.job.registry.InvalidJobData with
        a clear message if the type cannot run it."""

    def run(data, context):
        """Do the work, in a child process. ``context`` provides
        IJobContext. Return normally for success (any return value is
        ignored); raise to fail."""


class IJobContext(Interface):
    """What a running job may know about itself and reach."""

    job_id = Attribute("The job's id.")
    attempt = Attribute("This attempt's number: 1 on the first run.")
    lease_holder = Attribute("The lease holder (the runner's name).")
    database_url = Attribute("The database URL, or None when unknown.")
    now = Attribute(
        "When the runner dispatched this attempt (aware UTC datetime, from "
        "the runner's clock): the time a job should reason with.")
    cursor = Attribute(
        "For transactional types: a psycopg2 cursor in the transaction "
        "that will also complete the job. None otherwise.")

    def connect():
        """The child's psycopg2 connection to the database (opened on first
        use, kept across jobs; reopened if it was closed). Non-transactional
        jobs commit or roll back on it themselves."""


class IRunnableJob(Interface):
    """One claimed job, as a runner hands it to a child."""

    job_id = Attribute("The job's id.")
    job_type = Attribute("Its type's name.")
    data = Attribute("Its json_data, decoded.")
    attempt = Attribute("Its attempt_count after the claim.")
    max_retries = Attribute("Its max_retries.")
