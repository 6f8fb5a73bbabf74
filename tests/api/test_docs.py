"""docs/api.md's curl example, run as written (with bash -e and pipefail)
against a real site on loopback: every call must succeed and do what its
comment says."""

import re
import subprocess
from pathlib import Path

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.api.support import SiteMixin

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def curl_example() -> str:
    text = DOC.read_text()
    section = text[text.index("## With curl"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


class CurlExampleTests(SiteMixin, TestCase):

    async def test_the_example_runs(self):
        self.add_chroot()
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        (work / "build.sh").write_text("#!/bin/sh\necho hi\n")
        token_file = work / "token"
        token_file.write_text(self.tokens["alice"] + "\n")
        script = (curl_example()
                  .replace("http://buildmaster.example.org:8220", self.base)
                  .replace("~/.config/lp-services/token", str(token_file))
                  .replace("wait=30", "wait=0"))
        self.assertIn(self.base, script)
        result = await threads.deferToThread(
            subprocess.run, ["bash", "-euo", "pipefail", "-c", script],
            cwd=work, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        (job_id,) = [r[0] for r in self.query(
            "SELECT id FROM job WHERE requester = 'alice'")]
        self.assertEqual(self.query(
            "SELECT private, status FROM job WHERE id = %s", (job_id,)),
            [(True, 3)])  # private, and FAILED: cancelled
        self.assertIn('"status": "CANCELLED"', result.stdout)
        self.assertEqual((work / "build.sh.copy").read_text(),
                         "#!/bin/sh\necho hi\n")
