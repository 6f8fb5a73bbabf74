"""Acceptance: the remote command line (``lp-services --server URL
--token-file F``) against a real ``twistd buildmaster`` with a real agent
(sandbox backend) and a real job runner, over the test database.

What it shows: a submitter requests a private build and a recipe and
follows them with ``--wait`` (exit status by outcome) and ``logs
--follow``; ``show``, ``logs``, ``job list`` and ``builder list`` print
exactly what the database's direct mode prints; another submitter is told
the private build does not exist; roles are enforced; direct-only
commands and bad token files are refused with one line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.cli.demo_farm import DemoFarm
from lp_services.testing.database import DatabaseTestMixin
from tests.buildmaster.test_agent_contract import sandbox_unavailable

SLOW_SCRIPT = """#!/bin/sh
for n in 1 2 3 4 5 6; do echo "step $n"; sleep 1; done
echo done > /work/out/result.txt
"""


class RemoteCommandLineTests(DatabaseTestMixin, TestCase):

    skip = sandbox_unavailable()
    timeout = 600

    def setUp(self):
        super().setUp()
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir()
        self.farm = DemoFarm(self.home, console=None)
        self.farm.database_url = self.database_url
        self.addCleanup(self.farm.stop)
        port = self.farm.start_agent("s3cret")
        self.farm.register_builder(port, "s3cret")
        self.farm.add_chroot()
        self.base = self.farm.start_buildmaster()
        self.farm.start_runner()
        self.token_files = {}
        for name, role in (("alice", "submitter"), ("bob", "submitter"),
                           ("olga", "operator")):
            token = self.farm.lp("token", "create", name, "--role", role)
            path = self.home / ("%s.token" % name)
            path.write_text(token.strip().split()[-1] + "\n")
            self.token_files[name] = path

    def env(self):
        env = dict(os.environ, LP_FILES_URL=self.base)
        for key in ("LP_DATABASE_URL", "LP_SERVER", "LP_TOKEN_FILE"):
            env.pop(key, None)
        env["LP_HOME"] = str(self.home / "nowhere")  # remote: no local state
        return env

    def remote(self, who, *args, **popen):
        argv = [sys.executable, "-m", "lp_services.cli.main",
                "--server", self.base]
        if who is not None:
            argv += ["--token-file", str(self.token_files.get(who, who))]
        if popen:
            return subprocess.Popen(argv + list(args), env=self.env(),
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return subprocess.run(argv + list(args), env=self.env(),
                              capture_output=True, text=True, timeout=300)

    def direct(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "lp_services.cli.main", "--database",
             self.database_url, "--home", str(self.home), *args],
            env=dict(self.env(), LP_HOME=str(self.home)),
            capture_output=True, text=True, timeout=300)

    def script(self, name, text):
        path = self.home / name
        path.write_text(text)
        return str(path)

    def test_private_build_end_to_end(self):
        script = self.script("ok.sh", "#!/bin/sh\necho hello from the "
                             "sandbox\necho 42 > /work/out/answer.txt\n")
        done = self.remote("alice", "build", "request", "--type", "script",
                           "--processor", "amd64", "--script", script,
                           "--private", "--wait")
        self.assertEqual(done.returncode, 0, done.stderr)
        build = int(done.stdout.split()[0])
        self.assertIn("FULLYBUILT", done.stderr)
        # show: the same lines as the database's direct mode prints.
        shown = self.remote("alice", "show", str(build))
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertEqual(shown.stdout, self.direct("show", str(build)).stdout)
        for expected in ("requester:", "alice", "private:", "yes",
                         "request by alice", "answer.txt"):
            self.assertIn(expected, shown.stdout)
        # logs: the stored log, as direct mode prints it.
        log = self.remote("alice", "logs", str(build))
        self.assertEqual(log.returncode, 0, log.stderr)
        self.assertIn("hello from the sandbox", log.stdout)
        self.assertEqual(log.stdout, self.direct("logs", str(build)).stdout)
        # Another submitter: no such build; anonymous likewise.
        for who in ("bob", None):
            other = self.remote(who, "show", str(build))
            self.assertEqual(other.returncode, 1)
            self.assertIn("no job or build with id %d" % build, other.stderr)
        # An operator sees it; job and builder lists read alike.
        self.assertEqual(self.remote("olga", "show", str(build)).returncode, 0)
        for args in (("job", "list"), ("builder", "list", "--json")):
            self.assertEqual(self.remote("olga", *args).stdout,
                             self.direct(*args).stdout, args)

    def test_wait_exit_status_and_follow(self):
        failing = self.script("fail.sh", "#!/bin/sh\necho failing\nexit 3\n")
        done = self.remote("alice", "build", "request", "--type", "script",
                           "--processor", "amd64", "--script", failing,
                           "--wait")
        self.assertEqual(done.returncode, 1, done.stderr)
        slow = self.script("slow.sh", SLOW_SCRIPT)
        waiting = self.remote("alice", "build", "request", "--type",
                              "script", "--processor", "amd64", "--script",
                              slow, "--wait", popen=True)
        build = int(waiting.stdout.readline())
        follow = self.remote("alice", "logs", "--follow", str(build),
                             popen=True)
        out, err = follow.communicate(timeout=300)
        self.assertEqual(follow.returncode, 0, err)
        for n in range(1, 7):
            self.assertEqual(out.count("step %d\n" % n), 1, out)
        self.assertEqual(waiting.wait(timeout=300), 0)
        # Cancelled while it runs: --wait says so with exit status 3.
        waiting = self.remote("alice", "build", "request", "--type",
                              "script", "--processor", "amd64", "--script",
                              slow, "--wait", popen=True)
        build = int(waiting.stdout.readline())
        deadline = time.monotonic() + 120
        while "BUILDING" not in self.remote("alice", "show",
                                            str(build)).stdout:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.5)
        refused = self.remote("bob", "build", "cancel", str(build))
        self.assertEqual(refused.returncode, 1)
        self.assertIn("not yours", refused.stderr)
        cancelled = self.remote("alice", "build", "cancel", str(build))
        self.assertEqual(cancelled.returncode, 0, cancelled.stderr)
        self.assertEqual(waiting.wait(timeout=300), 3)

    def test_recipe_wait(self):
        url, sha1 = self.farm.serve_source()
        recipe = self.farm.write_recipe(url, sha1)
        done = self.remote("alice", "recipe", "request", str(recipe),
                           "--wait")
        self.assertEqual(done.returncode, 0, done.stderr)
        shown = self.remote("alice", "show", done.stdout.split()[0])
        self.assertIn("requester:", shown.stdout)
        self.assertIn("alice", shown.stdout)

    def test_refusals(self):
        """Roles, direct-only commands, bad token files: one line each."""
        self.assertEqual(self.remote("olga", "builder", "disable", "demo-builder",
                                     "--reason", "x").returncode, 0)
        refused = self.remote("alice", "builder", "enable", "demo-builder")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("HTTP 403", refused.stderr)
        direct_only = self.remote("olga", "report", "queue")
        self.assertEqual(direct_only.returncode, 1)
        self.assertIn("needs the database", direct_only.stderr)
        missing = self.remote(str(self.home / "no-such-file"), "job", "list")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("cannot read the token file", missing.stderr)
        anonymous = self.remote(None, "job", "enqueue", "noop")
        self.assertEqual(anonymous.returncode, 1)
        self.assertIn("HTTP 401", anonymous.stderr)
        for text in (missing.stderr, refused.stderr, anonymous.stderr):
            self.assertNotIn("Traceback", text)

    def test_private_args_stay_out_of_logs(self):
        """A private build's arguments reach its requester's answers only:
        not the buildmaster's or the agent's log, not the build's log."""
        from lp_services.api.client import ApiClient
        from lp_services.cli.wait import wait_for_work
        from lp_services.cli.context import CLIContext

        secret = "private-arg-%s" % os.getpid()
        alice = ApiClient(self.base, self.token_files["alice"].read_text()
                          .strip())
        script = self.script("args.sh", "#!/bin/sh\necho building\n")
        sha1 = alice.upload(Path(script), "build.sh")
        build = alice.post("/builds", {
            "build_type": "script", "processor": "amd64",
            "files": {"build.sh": sha1}, "script": "build.sh",
            "args": {"note": secret}, "private": True})["id"]
        ctx = CLIContext(database=None, home=None, server=self.base,
                         token_file=str(self.token_files["alice"]))
        self.assertEqual(wait_for_work(ctx, build, sleep=time.sleep), 0)
        self.assertEqual(alice.get("/work/%d" % build)["requester"], "alice")
        log = self.remote("alice", "logs", str(build)).stdout
        self.assertIn("building", log)
        self.assertNotIn(secret, log)
        logs = self.farm.state_dir / "logs"
        for name in ("buildmaster.log", "agent.log", "jobrunner.log"):
            self.assertNotIn(secret, (logs / name).read_text(), name)

    def test_native_jobs_over_the_api(self):
        """A submitter queues a submittable job; it runs; retrying it is
        refused (it did not fail); a type only operators may queue is
        refused to the submitter, not to an operator."""
        queued = self.remote("alice", "job", "enqueue", "noop", "--json")
        self.assertEqual(queued.returncode, 0, queued.stderr)
        job_id = json.loads(queued.stdout)["id"]
        deadline = time.monotonic() + 60
        while "COMPLETED" not in self.remote("alice", "show",
                                             str(job_id)).stdout:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.5)
        listed = self.remote("alice", "job", "list", "--json")
        self.assertIn(job_id, [j["id"] for j in json.loads(listed.stdout)])
        retried = self.remote("alice", "job", "retry", str(job_id))
        self.assertEqual(retried.returncode, 1)
        self.assertIn("HTTP 409", retried.stderr)
        refused = self.remote("alice", "job", "enqueue", "library-gc")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("not submittable", refused.stderr)
        self.assertEqual(self.remote("olga", "job", "enqueue",
                                     "library-gc").returncode, 0)
