"""Measurement profiles and run settings: one table, validated settings, stable keys."""

from __future__ import annotations

import pytest

from edgefair.contracts.errors import UsageError
from edgefair.contracts.measurement import PROFILES, RunSettings, settings_key


def test_profiles_follow_mlperf_and_benchmark_model_defaults():
    assert PROFILES["mlperf"].min_runs == 1024 and PROFILES["mlperf"].min_seconds == 60.0
    assert all(p.max_seconds > p.min_seconds for p in PROFILES.values())
    assert RunSettings(profile="standard", overrides={"min_runs": 7}).protocol()["min_runs"] == 7


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "fast"}, "unknown measurement profile 'fast': expected one of quick, standard, mlperf"),
    ({"mode": "train"}, "unknown run mode 'train': expected one of bench, eval, both"),
    ({"threads": -1}, "threads must be an integer >= 0 (0 = runtime default), got -1"),
    ({"threads": True}, "threads must be an integer >= 0 (0 = runtime default), got True"),
    ({"overrides": {"runs": 3}}, "unknown protocol override 'runs'; allowed: min_runs, min_seconds, max_seconds, "
                                 "warmup_runs, warmup_seconds"),
    ({"eval_limit": 0}, "eval limit must be >= 1, got 0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError) as e:
        RunSettings(**kwargs)
    assert str(e.value) == message


def test_settings_key_is_stable_and_order_free():
    a = RunSettings(profile="quick", threads=2, mode="both", overrides={"min_runs": 5, "min_seconds": 0.1})
    b = RunSettings(profile="quick", threads=2, mode="both", overrides={"min_seconds": 0.1, "min_runs": 5})
    assert a.key() == b.key() == settings_key(a.key_dict())
    assert a.key() != RunSettings(profile="quick", threads=1, mode="both").key()
