"""Agent configuration (lp_services.slave.config)."""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave.config import (
    SECRET_ENV, AgentConfig, ConfigError, load_config, parse_size)


class ConfigTests(SynchronousTestCase):
    """Files, overrides, secrets and refusals."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-agent-config-"))
        self.addCleanup(shutil.rmtree, self.dir)
        old = os.environ.pop(SECRET_ENV, None)
        if old is not None:
            self.addCleanup(os.environ.__setitem__, SECRET_ENV, old)

    def write(self, text):
        path = self.dir / "agent.toml"
        path.write_text(text)
        return path

    def test_file_and_overrides(self):
        """Keys under [buildslave] are read; overrides win; sizes parse."""
        path = self.write('[buildslave]\nname = "bob"\narch_tag = "i386"\n'
                          'secret = "s"\nmemory_limit = "64M"\nport = 9000\n'
                          'cache_dir = "c"\n')
        config = load_config(path, {"port": "9001", "name": None})
        self.assertEqual(config.name, "bob")
        self.assertEqual(config.arch_tag, "i386")
        self.assertEqual(config.port, 9001)
        self.assertEqual(config.memory_limit, 64 << 20)
        self.assertTrue(config.cache_dir.is_absolute())

    def test_secret_file_and_env(self):
        """secret_file is read (stripped); the environment is the last
        resort."""
        (self.dir / "secret").write_text("from-file\n")
        config = load_config(None, {"secret_file": str(self.dir / "secret")})
        self.assertEqual(config.secret, "from-file")
        os.environ[SECRET_ENV] = "from-env"
        self.addCleanup(os.environ.pop, SECRET_ENV, None)
        self.assertEqual(load_config(None, {}).secret, "from-env")

    def test_secret_not_in_repr(self):
        """The secret never appears in the config's repr (logs)."""
        self.assertNotIn("hunter2", repr(AgentConfig(secret="hunter2")))

    def test_refusals(self):
        """No secret without no_auth, unknown keys, bad values, unreadable
        or malformed files: ConfigError with one line."""
        self.assertRaises(ConfigError, load_config, None, {})
        self.assertTrue(load_config(None, {"no_auth": True}).no_auth)
        for overrides in ({"secret": "s", "colour": "red"},
                          {"secret": "s", "port": "x"},
                          {"secret": "s", "port": 70000},
                          {"secret": "s", "cgroup": "v3"},
                          {"secret": "s", "memory_limit": "lots"},
                          {"secret": "s", "build_timeout": 0}):
            self.assertRaises(ConfigError, load_config, None, overrides)
        self.assertRaises(ConfigError, load_config, self.dir / "missing")
        self.assertRaises(ConfigError, load_config, self.write("name = ["))

    def test_parse_size(self):
        """Sizes accept suffixes K, M, G, T (with optional B/iB)."""
        self.assertEqual(parse_size("2G"), 2 << 30)
        self.assertEqual(parse_size("512MiB"), 512 << 20)
        self.assertEqual(parse_size(10), 10)
        self.assertRaises(ConfigError, parse_size, True)


class IdRangeBaseTests(SynchronousTestCase):
    """The ``id_range_base`` key."""

    def test_default_and_override(self):
        """The default is idmap's DEFAULT_BASE; a TOML integer or a
        command-line string sets it."""
        from lp_services.slave.idmap import DEFAULT_BASE
        config = load_config(None, {"secret": "s"})
        self.assertEqual(config.id_range_base, DEFAULT_BASE)
        config = load_config(None, {"secret": "s",
                                    "id_range_base": "300000"})
        self.assertEqual(config.id_range_base, 300000)

    def test_refused_values(self):
        """A base that would cover host users' ids (below 65536), runs
        past the largest id, or is not a number is refused with the key's
        name."""
        for value in ("0", "1000", str((1 << 32) - 65536), "many"):
            e = self.assertRaises(ConfigError, load_config, None,
                                  {"secret": "s", "id_range_base": value})
            self.assertIn("id_range_base", str(e))
