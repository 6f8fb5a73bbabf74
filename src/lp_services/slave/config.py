"""The agent's configuration: a TOML file, overridden by command-line
options (see docs/agent.md for every key)."""

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lp_services.config import ConfigError
from lp_services.slave.idmap import DEFAULT_BASE, IdRange, IdRangeError

__all__ = ["AgentConfig", "load_config", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: Environment variable holding the secret (an alternative to a file).
SECRET_ENV = "LP_BUILDSLAVE_SECRET"


def parse_size(value) -> int:
    """``"64M"``, ``"2G"``, ``"1024"`` or an int -> bytes."""
    if isinstance(value, bool):
        raise ConfigError("not a size: %r" % (value,))
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().removesuffix("b").removesuffix("i")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[:-1] if unit else text
    try:
        return int(float(number) * _UNITS[unit])
    except ValueError:
        raise ConfigError("not a size: %r" % (value,)) from None


@dataclass
class AgentConfig:
    """Everything the agent needs; defaults suit a single local builder."""

    #: The builder's name (logs, cgroup names).
    name: str = "localhost"
    #: The architecture this builder builds for (``info()``).
    arch_tag: str = "amd64"
    #: Where ensurepresent()'d files and build results live.
    cache_dir: Path = Path("var/buildslave/cache")
    #: Where builds unpack their chroot and run.
    work_dir: Path = Path("var/buildslave/work")
    #: The backend name: ``sandbox`` (bubblewrap) or ``qemu`` (a VM).
    backend: str = "sandbox"
    #: TCP port and interface of /rpc and /filecache.
    port: int = 8221
    interface: str = ""
    #: Write the port actually listened on here (useful with port 0).
    port_file: Path | None = None
    #: The shared secret the master sends (Basic ``buildd:SECRET`` or
    #: ``Bearer SECRET``). Required unless ``no_auth``.
    secret: str | None = field(default=None, repr=False)
    #: Accept unauthenticated requests (Launchpad's behaviour); warns.
    no_auth: bool = False
    #: Source networks (CIDR) whose requests need no credentials, as in a
    #: Launchpad farm where the master sends none; every other address
    #: still needs the secret.
    trusted_networks: tuple = ()
    #: Limits of one build.
    memory_limit: int = 4 << 30
    pids_limit: int = 4096
    cpu_limit: float = 0.0          # cores; 0 = no CPU quota
    build_timeout: float = 6 * 3600.0
    #: cgroup handling: auto, v1, v2 or none (rlimit fallback).
    cgroup: str = "auto"
    #: The first host id of the 65,536 ids builds run as (ids 0-65535
    #: inside the build's user namespace): a range no host user, group or
    #: /etc/subuid / subgid grant uses (checked at start). See
    #: docs/virtualization.md.
    id_range_base: int = DEFAULT_BASE
    #: ensurepresent(): largest file, whole-download time limit.
    max_file_size: int = 8 << 30
    download_timeout: float = 3600.0
    #: Largest XML-RPC request body accepted.
    max_request_size: int = 16 << 20
    #: Largest build log kept (the rest is dropped with a note).
    max_log_size: int = 256 << 20
    #: Disk space of one build's /work (a loop-mounted image, see
    #: lp_services.slave.volume); 0 = no quota (not recommended).
    work_quota: int = 16 << 30

    def validate(self) -> "AgentConfig":
        """Check values and normalise paths; return self."""
        if not self.no_auth and not self.secret:
            raise ConfigError(
                "no secret configured: set 'secret' or 'secret_file' in the "
                "configuration, --secret-file, $%s, or --no-auth" % SECRET_ENV)
        if not (0 <= self.port <= 65535):
            raise ConfigError("port out of range: %r" % (self.port,))
        if self.backend not in ("sandbox", "qemu"):
            raise ConfigError("backend must be sandbox or qemu, not %r"
                              % self.backend)
        if self.cgroup not in ("auto", "v1", "v2", "none"):
            raise ConfigError("cgroup must be auto, v1, v2 or none")
        for name in ("memory_limit", "pids_limit", "max_file_size",
                     "max_request_size", "max_log_size"):
            if getattr(self, name) <= 0:
                raise ConfigError("%s must be positive" % name)
        if self.work_quota < 0:
            raise ConfigError("work_quota must be >= 0 (0 = no quota)")
        if self.build_timeout <= 0 or self.download_timeout <= 0:
            raise ConfigError("timeouts must be positive")
        if self.cpu_limit < 0:
            raise ConfigError("cpu_limit must be >= 0")
        try:
            IdRange(self.id_range_base)
        except IdRangeError as e:
            raise ConfigError("id_range_base: %s" % e) from None
        self.trusted_networks = _networks(self.trusted_networks)
        self.cache_dir = Path(self.cache_dir).resolve()
        self.work_dir = Path(self.work_dir).resolve()
        return self


def _networks(value) -> tuple:
    """``trusted_networks`` as ip_network objects, from a list or a
    comma/space separated string of CIDRs."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in value)
    except (TypeError, ValueError) as e:
        raise ConfigError("bad value for trusted_networks: %r (%s)"
                          % (value, e)) from None


_SIZES = {"memory_limit", "max_file_size", "max_request_size", "max_log_size",
          "work_quota"}
_FLOATS = {"cpu_limit", "build_timeout", "download_timeout"}
_INTS = {"port", "pids_limit", "id_range_base"}
_PATHS = {"cache_dir", "work_dir", "port_file"}


def _coerce(key: str, value):
    try:
        if key in _SIZES:
            return parse_size(value)
        if key in _FLOATS:
            return float(value)
        if key in _INTS:
            return int(value)
        if key in _PATHS:
            return Path(value) if value not in (None, "") else None
        if key == "no_auth":
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
    except (TypeError, ValueError) as e:
        raise ConfigError("bad value for %s: %r (%s)" % (key, value, e)) from None
    return value


def load_config(path: str | os.PathLike | None = None,
                overrides: dict | None = None) -> AgentConfig:
    """Read ``path`` (TOML; keys at top level or under ``[buildslave]``),
    apply ``overrides`` (options given on the command line, None = unset),
    resolve the secret and validate."""
    values: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError("cannot read %s: %s" % (path, e.strerror)) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("%s: %s" % (path, e)) from None
        values.update(data.get("buildslave", data))
        values.pop("buildslave", None)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    secret_file = values.pop("secret_file", None)
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError("unknown configuration keys: %s" % ", ".join(unknown))
    config = AgentConfig(**{k: _coerce(k, v) for k, v in values.items()})
    if not config.secret and secret_file:
        try:
            config.secret = Path(secret_file).read_text().strip()
        except OSError as e:
            raise ConfigError("cannot read secret file %s: %s"
                              % (secret_file, e.strerror)) from None
    if not config.secret and os.environ.get(SECRET_ENV):
        config.secret = os.environ[SECRET_ENV]
    return config.validate()
