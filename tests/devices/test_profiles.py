"""Device profiles: the shipped TOML files, the user's config dir, ad-hoc specs, errors."""

from __future__ import annotations

import pytest

from edgefair.devices import (
    DeviceError,
    DeviceProfile,
    ProfileError,
    list_profiles,
    load_profile_file,
    open_transport,
    resolve_device,
)
from edgefair.devices.adb import AdbTransport
from edgefair.devices.local import LocalTransport
from edgefair.devices.ssh import SSHTransport


@pytest.fixture(autouse=True)
def empty_config(tmp_path, monkeypatch):
    d = tmp_path / "config"
    d.mkdir()
    monkeypatch.setenv("EDGEFAIR_CONFIG_DIR", str(d))
    return d


def test_builtin_profiles_parse_and_list():
    profiles = {p.name: p for p in list_profiles()}
    assert {"local", "pi4", "pi5", "android", "pi4-emu"} <= set(profiles)
    for p in profiles.values():
        assert isinstance(p, DeviceProfile)
        assert p.source.startswith("builtin:")
        assert p.to_dict()["name"] == p.name
    pi4 = profiles["pi4"]
    assert pi4.transport == "ssh" and pi4.ssh.host == "raspberrypi.local"
    # user and port are left to ~/.ssh/config; the agent runs in the venv setup makes
    assert pi4.ssh.user is None and pi4.ssh.port is None and pi4.python is None
    assert pi4.ssh.strict_host_key_checking == "yes"
    assert pi4.workdir == "~/edgefair" and pi4.venv == "~/edgefair/venv"
    android = profiles["android"]
    assert android.adb.mode in ("agent", "benchmark_model")
    assert android.adb.benchmark_model.startswith("/data/local/tmp/")
    assert android.adb.taskset == "f0"
    assert profiles["pi4-emu"].emulated and not pi4.emulated
    assert profiles["local"].transport == "local"


def test_user_profiles_override_and_add(empty_config):
    (empty_config / "pi4.toml").write_text(
        'transport = "ssh"\npython = ["/opt/py/bin/python3", "-X", "utf8"]\n'
        '[ssh]\nhost = "10.1.2.3"\nuser = "me"\nport = 2200\n')
    (empty_config / "myphone.toml").write_text(
        'transport = "adb"\n[adb]\nserial = "ABC123"\nmode = "agent"\n')
    profiles = {p.name: p for p in list_profiles()}
    assert profiles["pi4"].ssh.host == "10.1.2.3"
    assert profiles["pi4"].python == ("/opt/py/bin/python3", "-X", "utf8")
    assert profiles["pi4"].source == str(empty_config / "pi4.toml")
    assert profiles["myphone"].adb.serial == "ABC123"
    assert resolve_device("myphone").adb.mode == "agent"
    assert "pi5" in profiles  # built-ins not overridden are still there


@pytest.mark.parametrize("text,key", [
    ('transport = "ssh"\n[ssh]\nhots = "x"\n', "ssh.hots"),
    ('transport = "ssh"\n[ssh]\nhost = "x"\nport = "22"\n', "ssh.port"),
    ('transport = "ssh"\n[ssh]\nhost = "x"\nport = 70000\n', "ssh.port"),
    ('transport = "carrier-pigeon"\n', "transport"),
    ('description = "no transport"\n', "transport"),
    ('transport = "ssh"\n', "ssh.host"),
    ('transport = "ssh"\n[ssh]\nhost = "x"\nstrict_host_key_checking = "no"\n',
     "ssh.strict_host_key_checking"),
    ('transport = "ssh"\n[ssh]\nhost = "x"\noptions = ["StrictHostKeyChecking=no"]\n',
     "ssh.options"),
    ('transport = "adb"\n[adb]\nmode = "apk"\n', "adb.mode"),
    ('transport = "adb"\n[adb]\ntaskset = "f0; reboot"\n', "adb.taskset"),
    ('transport = "local"\nthreads = 0\n', "threads"),
    ('transport = "local"\n[ssh]\nhost = "x"\n', "ssh"),
    ('transport = "local"\ncolour = "blue"\n', "colour"),
    ('transport = "local"\n[env]\n"BAD NAME" = "1"\n', "env.BAD NAME"),
    ('transport = "local"\nvenv = "~/v"\n', "venv"),
    ('transport = "ssh"\nvenv = 3\n[ssh]\nhost = "x"\n', "venv"),
])
def test_bad_profile_error_names_file_and_key(empty_config, text, key):
    f = empty_config / "broken.toml"
    f.write_text(text)
    with pytest.raises(ProfileError) as ei:
        load_profile_file(f)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(f) in msg
    assert f"'{key}'" in msg
    # The same error surfaces from list_profiles / resolve_device.
    with pytest.raises(ProfileError, match="broken.toml"):
        resolve_device("local")


def test_invalid_toml_names_file(empty_config):
    f = empty_config / "bad.toml"
    f.write_text('transport = "ssh\n')
    with pytest.raises(ProfileError) as ei:
        load_profile_file(f)
    assert str(f) in str(ei.value) and "invalid TOML" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_ad_hoc_specs():
    p = resolve_device("ssh://pi@192.0.2.7:2222")
    assert p.transport == "ssh" and p.ssh.user == "pi" and p.ssh.port == 2222
    assert p.ssh.host == "192.0.2.7" and p.ssh.strict_host_key_checking == "yes"
    p = resolve_device("ssh://host.example?python=/usr/bin/python3.11&workdir=/tmp/x%20y")
    assert p.ssh.user is None and p.ssh.port is None  # ~/.ssh/config decides
    assert p.python == ("/usr/bin/python3.11",) and p.workdir == "/tmp/x y"
    assert p.venv == "~/edgefair/venv" and resolve_device("ssh://h?venv=").venv is None
    assert resolve_device("ssh://h?venv=/opt/ef%20env").venv == "/opt/ef env"
    a = resolve_device("adb:R58M123ABC")
    assert a.transport == "adb" and a.adb.serial == "R58M123ABC"
    assert resolve_device("adb:X?mode=agent&taskset=").adb.taskset is None
    assert resolve_device("adb:").adb.serial is None
    with pytest.raises(ProfileError, match="unknown option"):
        resolve_device("ssh://h?password=hunter2")
    with pytest.raises(ProfileError, match="strict_host_key_checking"):
        resolve_device("ssh://h?strict_host_key_checking=no")
    with pytest.raises(DeviceError) as ei:
        resolve_device("nosuchdevice")
    assert "pi4" in str(ei.value) and "ssh://" in str(ei.value)


def test_open_transport_kinds(tmp_path):
    t = open_transport(resolve_device("local"))
    try:
        assert isinstance(t, LocalTransport) and t.profile.name == "local"
    finally:
        t.close()
    t = open_transport(resolve_device("pi4"))
    assert isinstance(t, SSHTransport) and t.describe() == "ssh raspberrypi.local"
    argv = t.ssh_argv("true")
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert any(a.startswith("ConnectTimeout=") for a in argv)
    assert any(a.startswith("ServerAliveInterval=") for a in argv)
    assert "-p" not in argv and "-l" not in argv  # ~/.ssh/config decides user and port
    assert "ControlMaster=auto" in argv and any(a.startswith("ControlPersist=") for a in argv)
    t.close()
    t = open_transport(resolve_device("ssh://pi@192.0.2.7:2222"))
    argv = t.ssh_argv("true")
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "pi"
    t.close()
    t = open_transport(resolve_device("adb:SER1"))
    assert isinstance(t, AdbTransport) and t.adb_argv("shell", "x")[:3] == ["adb", "-s", "SER1"]


def test_emulated_profile_needs_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFAIR_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(DeviceError, match="bench devices setup pi4-emu"):
        open_transport(resolve_device("pi4-emu"))
