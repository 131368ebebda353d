"""Device profiles: TOML files parsed into :class:`DeviceProfile`, and ad-hoc specs.

Built-in profiles ship in ``edgefair/devices/profiles/*.toml``. A user's own profiles in
``$EDGEFAIR_CONFIG_DIR`` (or ``~/.config/edgefair/devices``), ``*.toml``, add devices or
replace a built-in one of the same name (the file stem). Ad-hoc specs need no file:

    ssh://[user@]host[:port][?python=...&workdir=...&venv=...&identity_file=...&known_hosts=...]
    adb:SERIAL  (or adb: for the only attached device) [?mode=agent|benchmark_model&...]

Profile keys (unknown keys are errors; each error names the file and the key):

    description = "..."            transport = "local" | "ssh" | "adb" | "emulated"
    python = "python3" | [argv...] workdir = "~/edgefair"     threads = 1
    venv = "~/edgefair/venv"       timeout_s = 900            [env] NAME = "value"

``venv`` is the virtual environment ``bench devices setup`` makes on an SSH device with
``python`` (default ``python3``), default ``~/edgefair/venv``. Once it exists the agent
runs with its Python; until then (and with ``venv = ""``) with ``python``.
    [ssh]  host, user, port, identity_file, known_hosts, strict_host_key_checking
           ("yes" | "accept-new"), connect_timeout_s, server_alive_interval_s,
           server_alive_count_max, ssh_config, options = ["Key=Value", ...]
    [adb]  serial, mode ("agent" | "benchmark_model"), benchmark_model, taskset, adb
    [emulated]  cache_dir, qemu
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from edgefair.devices.base import DeviceError, ProfileError, Transport

TRANSPORTS = ("local", "ssh", "adb", "emulated")
ADB_MODES = ("agent", "benchmark_model")


@dataclass(frozen=True)
class SSHSettings:
    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    strict_host_key_checking: str = "yes"
    connect_timeout_s: int = 10
    server_alive_interval_s: int = 5
    server_alive_count_max: int = 3
    ssh_config: str | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdbSettings:
    serial: str | None = None
    mode: str = "agent"
    benchmark_model: str = "/data/local/tmp/benchmark_model"
    taskset: str | None = None
    adb: str = "adb"


@dataclass(frozen=True)
class EmulatedSettings:
    cache_dir: str | None = None
    qemu: str = "qemu-aarch64-static"


@dataclass(frozen=True)
class DeviceProfile:
    """One device: how to reach it, which Python runs the agent there, where it works."""

    name: str
    transport: str
    description: str = ""
    python: tuple[str, ...] | None = None       # None: the transport's default
    workdir: str | None = None                  # None: the transport's default
    venv: str | None = None                     # where `bench devices setup` installs the runtimes
    threads: int = 1
    timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)
    ssh: SSHSettings | None = None
    adb: AdbSettings | None = None
    emulated_settings: EmulatedSettings | None = None
    source: str = ""                            # file path, "builtin:NAME.toml" or the spec

    @property
    def emulated(self) -> bool:
        return self.transport == "emulated"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "transport": self.transport,
                             "description": self.description, "emulated": self.emulated,
                             "python": list(self.python) if self.python else None,
                             "workdir": self.workdir, "venv": self.venv, "threads": self.threads,
                             "timeout_s": self.timeout_s, "source": self.source}
        if self.env:
            d["env"] = dict(self.env)
        for key, val in (("ssh", self.ssh), ("adb", self.adb),
                         ("emulated_settings", self.emulated_settings)):
            if val is not None:
                d["emulated" if key == "emulated_settings" else key] = {
                    k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(val).items()}
        return d

    def target(self) -> str:
        """Where it points, in one short string (for listings)."""
        if self.ssh:
            s = self.ssh
            return (f"{s.user + '@' if s.user else ''}{s.host}"
                    f"{':' + str(s.port) if s.port else ''}")
        if self.adb:
            return f"adb:{self.adb.serial or '(default)'} mode={self.adb.mode}"
        if self.emulated_settings is not None:
            return "qemu-aarch64 sysroot"
        return "this machine"


# --------------------------------------------------------------------------- parsing
class _Reader:
    """Typed access to a TOML table that reports the file and dotted key on error."""

    def __init__(self, source: str, table: dict, prefix: str = ""):
        self.source, self.table, self.prefix = source, table, prefix
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.prefix}{k}"

    def fail(self, k: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source}: key '{self.key(k)}' {problem}")

    def get(self, k: str, kind: type | tuple, default: Any = None, *, required: bool = False):
        self.used.add(k)
        if k not in self.table:
            if required:
                raise ProfileError(f"{self.source}: missing key '{self.key(k)}'")
            return default
        v = self.table[k]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if bool in kinds or not isinstance(v, bool):
            if isinstance(v, kinds):
                return v
            if float in kinds and isinstance(v, int) and not isinstance(v, bool):
                return float(v)
        names = " or ".join({str: "a string", int: "an integer", float: "a number",
                             list: "an array", dict: "a table", bool: "true/false"}[t]
                            for t in kinds)
        raise self.fail(k, f"must be {names}, got {v!r}")

    def string(self, k: str, default: str | None = None, *, required: bool = False,
               choices: tuple[str, ...] | None = None, allow_empty: bool = False) -> Any:
        v = self.get(k, str, default, required=required)
        if v is None:
            return None
        if v == "" and not allow_empty:
            return default
        if choices and v not in choices:
            raise self.fail(k, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def integer(self, k: str, default: int | None, *, minimum: int = 0,
                maximum: int | None = None) -> Any:
        v = self.get(k, int, default)
        if v is None:
            return None
        if v < minimum or (maximum is not None and v > maximum):
            rng = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            raise self.fail(k, f"must be {rng}, got {v}")
        return v

    def table_of(self, k: str) -> _Reader | None:
        v = self.get(k, dict, None)
        return None if v is None else _Reader(self.source, v, f"{self.key(k)}.")

    def allow(self, keys: tuple[str, ...]) -> _Reader:
        """Fail on the first key not in ``keys`` (checked before anything is read)."""
        for k in self.table:
            if k not in keys:
                raise ProfileError(f"{self.source}: unknown key '{self.key(k)}' "
                                   f"(known: {', '.join(keys)})")
        return self

    def finish(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise ProfileError(f"{self.source}: unknown key '{self.key(extra[0])}'")


def _python_argv(r: _Reader) -> tuple[str, ...] | None:
    v = r.get("python", (str, list), None)
    if v is None:
        return None
    if isinstance(v, str):
        argv = shlex.split(v)
    else:
        if not all(isinstance(a, str) for a in v):
            raise r.fail("python", "must be a string or an array of strings")
        argv = list(v)
    if not argv or not argv[0]:
        raise r.fail("python", "must not be empty")
    return tuple(argv)


_TOP_KEYS = ("name", "description", "transport", "python", "workdir", "venv", "threads", "timeout_s",
             "env", "ssh", "adb", "emulated")
#: Where ``bench devices setup`` puts the runtimes on an SSH device unless the profile says otherwise.
DEFAULT_VENV = "~/edgefair/venv"
_SSH_KEYS = ("host", "user", "port", "identity_file", "known_hosts", "strict_host_key_checking",
             "connect_timeout_s", "server_alive_interval_s", "server_alive_count_max",
             "ssh_config", "options")
_ADB_KEYS = ("serial", "mode", "benchmark_model", "taskset", "adb")
_EMU_KEYS = ("cache_dir", "qemu")


def _env(r: _Reader) -> dict[str, str]:
    env_r = r.table_of("env")
    env: dict[str, str] = {}
    if env_r is None:
        return env
    for k, v in env_r.table.items():
        if not isinstance(v, str):
            raise env_r.fail(k, f"must be a string, got {v!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise env_r.fail(k, "is not a valid environment variable name")
        env[k] = v
    return env


def _ssh_settings(r: _Reader, source: str) -> SSHSettings:
    s = r.table_of("ssh")
    if s is None:
        raise ProfileError(f"{source}: missing key 'ssh.host'")
    s.allow(_SSH_KEYS)
    options = s.get("options", list, [])
    if not all(isinstance(o, str) and "=" in o for o in options):
        raise s.fail("options", "must be an array of 'Key=Value' strings")
    for o in options:
        if o.split("=", 1)[0].strip().lower() in ("stricthostkeychecking", "userknownhostsfile"):
            raise s.fail("options", "must not set host-key checking (use strict_host_key_checking / known_hosts)")
    ssh = SSHSettings(
        host=s.string("host", required=True), user=s.string("user"),
        port=s.integer("port", None, minimum=1, maximum=65535), identity_file=s.string("identity_file"),
        known_hosts=s.string("known_hosts"),
        strict_host_key_checking=s.string("strict_host_key_checking", "yes", choices=("yes", "accept-new")),
        connect_timeout_s=s.integer("connect_timeout_s", 10, minimum=1),
        server_alive_interval_s=s.integer("server_alive_interval_s", 5, minimum=1),
        server_alive_count_max=s.integer("server_alive_count_max", 3, minimum=1),
        ssh_config=s.string("ssh_config"), options=tuple(options))
    if ssh.host.startswith("-"):
        raise s.fail("host", f"is not a host name: {ssh.host!r}")
    s.finish()
    return ssh


def _adb_settings(r: _Reader, source: str) -> AdbSettings:
    a = (r.table_of("adb") or _Reader(source, {}, "adb.")).allow(_ADB_KEYS)
    taskset = a.string("taskset", None)
    if taskset is not None and not all(c in "0123456789abcdefABCDEFx," for c in taskset):
        raise a.fail("taskset", f"must be a hex CPU mask such as 'f0', got {taskset!r}")
    adb = AdbSettings(serial=a.string("serial"), mode=a.string("mode", "agent", choices=ADB_MODES),
                      benchmark_model=a.string("benchmark_model", "/data/local/tmp/benchmark_model"),
                      taskset=taskset, adb=a.string("adb", "adb"))
    a.finish()
    return adb


def _emulated_settings(r: _Reader, source: str) -> EmulatedSettings:
    e = (r.table_of("emulated") or _Reader(source, {}, "emulated.")).allow(_EMU_KEYS)
    emu = EmulatedSettings(cache_dir=e.string("cache_dir"), qemu=e.string("qemu", "qemu-aarch64-static"))
    e.finish()
    return emu


def parse_profile(data: dict, *, name: str, source: str) -> DeviceProfile:
    """A DeviceProfile from a parsed TOML table; ProfileError names ``source`` and the key."""
    r = _Reader(source, data).allow(_TOP_KEYS)
    pname = r.string("name", name) or name
    if pname != name:
        raise r.fail("name", f"must match the file name {name!r}, got {pname!r}")
    transport = r.string("transport", required=True, choices=TRANSPORTS)
    description = r.string("description", "", allow_empty=True) or ""
    python = _python_argv(r)
    workdir = r.string("workdir", None)
    venv = _venv(r, transport)
    threads = r.integer("threads", 1, minimum=1, maximum=256)
    timeout = r.get("timeout_s", (int, float), 900.0)
    if timeout <= 0:
        raise r.fail("timeout_s", f"must be > 0, got {timeout}")
    env = _env(r)
    for sec in {"ssh", "adb", "emulated"} - {transport}:
        if sec in data:
            raise r.fail(sec, f"does not apply to transport {transport!r}")
    ssh = _ssh_settings(r, source) if transport == "ssh" else None
    adb = _adb_settings(r, source) if transport == "adb" else None
    emu = _emulated_settings(r, source) if transport == "emulated" else None
    r.finish()
    return DeviceProfile(name=name, transport=transport, description=description, python=python, workdir=workdir,
                         venv=venv, threads=threads, timeout_s=float(timeout), env=env, ssh=ssh, adb=adb,
                         emulated_settings=emu, source=source)


def _venv(r: _Reader, transport: str) -> str | None:
    """The profile's venv: its value, ``""`` for none, else the default for SSH devices."""
    default = DEFAULT_VENV if transport == "ssh" else None
    v = r.string("venv", default, allow_empty=True)
    if v is not None and transport in ("local", "emulated", "adb"):
        raise r.fail("venv", f"does not apply to transport {transport!r}")
    return v or None


def load_profile_file(path: Path, *, source: str | None = None) -> DeviceProfile:
    src = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"{src}: cannot read ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{src}: invalid TOML ({e})") from None
    return parse_profile(data, name=path.stem, source=src)


# --------------------------------------------------------------------------- lookup
def config_dir() -> Path:
    env = os.environ.get("EDGEFAIR_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.config/edgefair/devices").expanduser()


def _builtin_profiles() -> dict[str, DeviceProfile]:
    out: dict[str, DeviceProfile] = {}
    pkg = resources.files("edgefair.devices") / "profiles"
    for entry in sorted(pkg.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as p:
                out[p.stem] = load_profile_file(Path(p), source=f"builtin:{entry.name}")
    return out


def _user_profiles() -> dict[str, DeviceProfile]:
    d = config_dir()
    if not d.is_dir():
        return {}
    return {p.stem: load_profile_file(p) for p in sorted(d.glob("*.toml"))}


def list_profiles() -> list[DeviceProfile]:
    """Built-in profiles, then the user's (a user profile replaces a built-in of its name)."""
    profiles = _builtin_profiles()
    profiles.update(_user_profiles())
    return [profiles[k] for k in sorted(profiles)]


def _parse_query(spec: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    q = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    for k in q:
        if k not in allowed:
            raise ProfileError(f"device spec {spec!r}: unknown option {k!r} "
                               f"(allowed: {', '.join(allowed)})")
    return q


_SSH_QUERY = ("python", "workdir", "venv", "identity_file", "known_hosts", "threads", "timeout_s",
              "strict_host_key_checking", "ssh_config")
_ADB_QUERY = ("mode", "python", "workdir", "benchmark_model", "taskset", "threads", "timeout_s")


def _spec_number(spec: str, q: dict, key: str, cast, default):
    if key not in q:
        return default
    try:
        return cast(q[key])
    except ValueError:
        raise ProfileError(f"device spec {spec!r}: option {key!r} must be a number") from None


_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")  # a DNS name, an alias or IPv4
_USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*[$]?$")  # POSIX portable user names


def redact_spec(spec: str) -> str:
    """``spec`` as it may be shown: a password in it replaced by ``***``."""
    head, sep, rest = spec.partition("://")
    if not sep:
        return spec
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}{sep}{userinfo}{at}{hostport}{slash}{tail}"


def _check_ssh_names(spec: str, user: str | None, host: str) -> None:
    """Refuse, before anything runs, a user or host no real account or machine has."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if not (is_ip or _HOST_NAME.match(host)):
        raise ProfileError(f"device spec {spec!r}: {host!r} is not a host name or IP address")
    if user is not None and not _USER_NAME.match(user):
        raise ProfileError(f"device spec {spec!r}: {user!r} is not a valid user name")


def _ssh_spec(spec: str) -> DeviceProfile:
    shown = redact_spec(spec)
    try:
        u = urlsplit(spec)
        port = u.port
    except ValueError:
        raise ProfileError(f"device spec {shown!r}: invalid host or port") from None
    if u.password is not None:
        raise ProfileError(f"device spec {shown!r}: a password in a device URL is not supported (it would end "
                           "up in logs and results); use a key (identity_file=) or ~/.ssh/config")
    if not u.hostname:
        raise ProfileError(f"device spec {spec!r}: no host (expected ssh://user@host:port)")
    _check_ssh_names(spec, unquote(u.username) if u.username else None, u.hostname)
    q = _parse_query(spec, u.query, _SSH_QUERY)
    strict = q.get("strict_host_key_checking", "yes")
    if strict not in ("yes", "accept-new"):
        raise ProfileError(f"device spec {spec!r}: strict_host_key_checking must be yes or "
                           f"accept-new")
    ssh = SSHSettings(host=u.hostname, user=unquote(u.username) if u.username else None,
                      port=port, identity_file=q.get("identity_file"),
                      known_hosts=q.get("known_hosts"), strict_host_key_checking=strict,
                      ssh_config=q.get("ssh_config"))
    python = tuple(shlex.split(q["python"])) if q.get("python") else None
    return DeviceProfile(name=spec.split("?", 1)[0], transport="ssh",
                         description="ad-hoc SSH device", python=python,
                         workdir=q.get("workdir") or "/tmp/edgefair", venv=q.get("venv", DEFAULT_VENV) or None,
                         threads=_spec_number(spec, q, "threads", int, 1),
                         timeout_s=_spec_number(spec, q, "timeout_s", float, 1800.0),
                         ssh=ssh, source=spec)


def _adb_spec(spec: str) -> DeviceProfile:
    rest = spec[len("adb:"):]
    serial, _, query = rest.partition("?")
    q = _parse_query(spec, query, _ADB_QUERY)
    try:
        base = resolve_device("android")
    except DeviceError:
        base = DeviceProfile(name="android", transport="adb", adb=AdbSettings())
    base_adb = base.adb or AdbSettings()
    mode = q.get("mode", base_adb.mode)
    if mode not in ADB_MODES:
        raise ProfileError(f"device spec {spec!r}: mode must be agent or benchmark_model")
    adb = replace(base_adb, serial=serial or None, mode=mode,
                  benchmark_model=q.get("benchmark_model", base_adb.benchmark_model),
                  taskset=q["taskset"] or None if "taskset" in q else base_adb.taskset)
    return replace(base, name=spec.split("?", 1)[0], description="ad-hoc adb device",
                   python=tuple(shlex.split(q["python"])) if q.get("python") else base.python,
                   workdir=q.get("workdir") or base.workdir,
                   threads=_spec_number(spec, q, "threads", int, base.threads),
                   timeout_s=_spec_number(spec, q, "timeout_s", float, base.timeout_s),
                   adb=adb, source=spec)


def resolve_device(spec: str) -> DeviceProfile:
    """A profile name (``local``, ``pi4``, ``android``, ``pi4-emu``, a user's), an
    ``ssh://user@host:port`` spec or ``adb:SERIAL``."""
    spec = (spec or "").strip()
    if not spec:
        raise DeviceError("empty device spec")
    if spec.startswith("ssh://"):
        return _ssh_spec(spec)
    if spec.startswith("adb:"):
        return _adb_spec(spec)
    profiles = {p.name: p for p in list_profiles()}
    if spec in profiles:
        return profiles[spec]
    known = ", ".join(sorted(profiles))
    raise DeviceError(f"unknown device {spec!r} (profiles: {known}; or ssh://user@host:port, "
                      f"adb:SERIAL; user profiles go in {config_dir()})")


def open_transport(profile: DeviceProfile, *, setup: bool = False, progress=None) -> Transport:
    """The transport a profile describes. For ``emulated`` profiles the sysroot must be
    built (``setup=True`` builds it when missing)."""
    from edgefair.devices.adb import DEFAULT_WORKDIR, AdbTransport
    from edgefair.devices.emulated import emulated_transport
    from edgefair.devices.local import LocalTransport
    from edgefair.devices.ssh import SSHTransport

    env = dict(profile.env)
    if profile.transport == "local":
        t: Transport = LocalTransport(name=profile.name, workdir=profile.workdir,
                                      python=list(profile.python) if profile.python else None,
                                      env=env)
    elif profile.transport == "ssh":
        s = profile.ssh
        assert s is not None
        t = SSHTransport(name=profile.name, host=s.host, user=s.user, port=s.port,
                         workdir=profile.workdir or "/tmp/edgefair",
                         python=profile.python or ("python3",), venv=profile.venv,
                         identity_file=s.identity_file, known_hosts=s.known_hosts,
                         strict_host_key_checking=s.strict_host_key_checking,
                         connect_timeout_s=s.connect_timeout_s,
                         server_alive_interval_s=s.server_alive_interval_s,
                         server_alive_count_max=s.server_alive_count_max,
                         ssh_config=s.ssh_config, options=s.options)
    elif profile.transport == "adb":
        a = profile.adb or AdbSettings()
        t = AdbTransport(name=profile.name, serial=a.serial,
                         workdir=profile.workdir or DEFAULT_WORKDIR,
                         python=profile.python or ("python3",), adb_binary=a.adb,
                         taskset=a.taskset)
    elif profile.transport == "emulated":
        e = profile.emulated_settings or EmulatedSettings()
        cache = Path(e.cache_dir).expanduser() if e.cache_dir else None
        t = emulated_transport(name=profile.name, cache_dir=cache, qemu=e.qemu, setup=setup,
                               progress=progress)
    else:  # pragma: no cover - parse_profile rejects others
        raise DeviceError(f"unknown transport {profile.transport!r}")
    t.profile = profile
    return t
