"""Run trial and end its output with one plain summary line.

``python -m lp_services.testing.summary COMMAND...`` runs COMMAND (a trial
invocation), passes its output through, and finishes with
``tests: N passed, N failed, N skipped`` computed from trial's own closing
line, so that tools that read a standard summary understand the run. The
exit status is trial's; a run that executed no test fails.
"""

import re
import subprocess
import sys

_CLOSING = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")


def summarise(closing: str) -> tuple[int, int, int] | None:
    """(passed, failed, skipped) from trial's closing line, or None."""
    match = _CLOSING.match(closing.strip())
    if match is None:
        return None
    counts = dict((k.strip(), int(v)) for k, v in
                  (item.split("=") for item in match.group(2).split(",")))
    passed = counts.get("successes", 0)
    failed = (counts.get("failures", 0) + counts.get("errors", 0)
              + counts.get("unexpectedSuccesses", 0))
    skipped = counts.get("skips", 0) + counts.get("expectedFailures", 0)
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    summary = None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        summary = summarise(line) or summary
    status = process.wait()
    if summary is None:
        print("tests: no summary from trial (exit %d)" % status)
        return status or 1
    passed, failed, skipped = summary
    print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if passed + failed == 0:
        print("tests: no test ran")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
