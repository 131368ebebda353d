"""Devices: transports (local, ssh, adb, emulated arm64), profiles (*.toml) and the runner.

    from edgefair.devices import resolve_device, run_artifact
    result = run_artifact(resolve_device("pi4"), "artifacts/tflite-int8-s0", "batch.npz")

Every failure is a :class:`DeviceError` whose message is one line naming the device.
"""

from edgefair.devices.base import CommandOutcome, CommandRequest, DeviceError, ProfileError, Transport
from edgefair.devices.profiles import (
    AdbSettings,
    DeviceProfile,
    EmulatedSettings,
    SSHSettings,
    config_dir,
    list_profiles,
    load_profile_file,
    open_transport,
    resolve_device,
)

__all__ = [
    "CommandOutcome", "CommandRequest", "DeviceError", "ProfileError", "Transport",
    "DeviceProfile", "SSHSettings", "AdbSettings", "EmulatedSettings", "config_dir",
    "list_profiles", "load_profile_file", "open_transport", "resolve_device",
    "run_artifact", "probe_device", "RunFailed", "setup_emulated_pi",
    "LocalTransport", "SSHTransport", "AdbTransport", "EmulatedArm64Transport",
]


def __getattr__(name):  # lazy: the runner imports the agent module (numpy)
    if name in ("run_artifact", "probe_device", "RunFailed"):
        from edgefair.devices import runner
        return getattr(runner, name)
    if name in ("setup_emulated_pi", "EmulatedArm64Transport"):
        from edgefair.devices import emulated
        return getattr(emulated, name)
    if name == "LocalTransport":
        from edgefair.devices.local import LocalTransport
        return LocalTransport
    if name == "SSHTransport":
        from edgefair.devices.ssh import SSHTransport
        return SSHTransport
    if name == "AdbTransport":
        from edgefair.devices.adb import AdbTransport
        return AdbTransport
    raise AttributeError(f"module 'edgefair.devices' has no attribute {name!r}")
