"""``--wait``: follow requested work to its end, and exit with how it
ended (0 succeeded, 1 failed, 3 cancelled), in either mode."""

import time

import click

__all__ = ["EXIT_CODES", "exit_with", "wait_for_work"]

#: Exit status by outcome (2 is click's usage error).
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}

#: Seconds between looks.
POLL = 2.0


def _wait_one(ctx, job_id, sleep):
    from lp_services.cli.show import load_details

    last = None
    while True:
        details = load_details(ctx, job_id)
        state = (details.status, details.build.build_status
                 if details.build else None)
        if state != last:
            click.echo("%s %d: %s%s" % (details.kind, job_id, details.status,
                                        " (%s)" % state[1] if state[1]
                                        else ""), err=True)
            last = state
        if details.status in ("COMPLETED", "FAILED"):
            return details
        sleep(POLL)


def wait_for_work(ctx, job_id: int, then_dependents: bool = False,
                  sleep=time.sleep) -> int:
    """Wait until job ``job_id`` ends (and, with ``then_dependents``, the
    work it queued, e.g. a recipe's build); the exit status."""
    details = _wait_one(ctx, job_id, sleep)
    if then_dependents and details.outcome == "succeeded":
        for dependent in details.dependents:
            details = _wait_one(ctx, dependent.id, sleep)
            if details.outcome != "succeeded":
                break
    return EXIT_CODES.get(details.outcome or "failed", 1)


def exit_with(code: int) -> None:
    """End the command with exit status ``code`` (0 returns)."""
    if code:
        raise SystemExit(code)
