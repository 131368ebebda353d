"""The Ray executor on a real multi-node cluster (ray.cluster_utils.Cluster) with two real loopback
SSH devices, each pinned to its own worker node by the custom resource ``device:<name>``.

One module-scoped cluster (head + node A with ``device:a`` + node B with ``device:b``, one CPU
each) and two sshd's serve every test here: cluster start-up is the slow part.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edgefair.bench.config import load_config
from edgefair.bench.farm import FarmError, load_farm

SMALL = """
dataset = "synthfer:n=600:seed=2"
archs = ["cnn"]
epochs = 2
targets = ["onnx-fp32", "onnx-int8"]
sparsities = [0.0]
finetune_epochs = 0
calib = 64
min_runs = 20
min_seconds = 0.05
min_n = 5
retries = 0
"""
N_ART = 2  # per device: kept small for the CI budget (cluster start-up and each ssh measurement cost)
GET = 120  # no wait in these tests is longer


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """Two real sshd's on 127.0.0.1 and a device profile for each (testpi-a, testpi-b)."""
    from tests.devices.conftest import SSHD, SshServer, ensure_system_packages

    why = ensure_system_packages(SSHD)
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("farm-devices")
    cfg = base / "profiles"
    cfg.mkdir()
    servers = []
    for name in ("a", "b"):
        (base / f"sshd-{name}").mkdir()
        server = SshServer(base / f"sshd-{name}")
        server.start()
        servers.append(server)
        (cfg / f"testpi-{name}.toml").write_text(server.profile_toml(workdir=str(base / f"workdir-{name}")))
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEFAIR_CONFIG_DIR", str(cfg))
    yield ["testpi-a", "testpi-b"]
    mp.undo()
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def cluster(devices):
    """A real three-node Ray cluster on this machine; ray.shutdown and cluster teardown afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = {"a": c.add_node(num_cpus=1, resources={"device:a": 1}),
             "b": c.add_node(num_cpus=1, resources={"device:b": 1})}
    c.wait_for_nodes(timeout=GET)
    ray.init(address=c.address, log_to_driver=False)
    yield c, nodes
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def farm(tmp_path_factory, devices):
    p = tmp_path_factory.mktemp("farm") / "farm.toml"
    p.write_text('[devices.a]\nspec = "testpi-a"\nnode = "127.0.0.1"\n\n[devices.b]\nspec = "testpi-b"\n')
    return load_farm(p)


def _cfg(tmp_path: Path, devices: list[str]):
    p = tmp_path / "sweep.toml"
    p.write_text(SMALL)
    cfg = load_config(p)
    cfg.devices = list(devices)
    return cfg


def _runs(db: Path) -> dict[tuple, dict]:
    """The farm devices' runs (host-side evaluations on ``local``, an audit's fallback, left out)."""
    with sqlite3.connect(db, timeout=30) as c:
        c.row_factory = sqlite3.Row
        return {(r["artifact_id"], r["device"], r["settings_key"]): dict(r)
                for r in c.execute("SELECT * FROM runs WHERE device != 'local'")}


def _audits(db: Path) -> dict[tuple, str]:
    with sqlite3.connect(db, timeout=30) as c:
        return {tuple(r[:3]): r[3] for r in c.execute("SELECT artifact_id, device, settings_key, verdict FROM audits")}


def _pred(row: dict) -> list[int]:
    return json.loads(row["result_json"])["eval"]["pred"]


def _window(row: dict) -> dict:
    return json.loads(row["result_json"])["window"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, devices, cluster, farm):
    """The same small sweep with the local executor and with the Ray executor (farm of two)."""
    from edgefair.bench.executor import LocalExecutor, RayExecutor
    from edgefair.bench.sweep import run_sweep

    base = tmp_path_factory.mktemp("swept")
    cfg = _cfg(base, devices)
    t0 = time.perf_counter()
    local = run_sweep(cfg, out=base / "local", executor=LocalExecutor())
    t_local = time.perf_counter() - t0
    # Training on Ray runs with the task's one thread, locally with every core: torch's kernels are not
    # bit-identical across thread counts, so the Ray sweep starts from the local training (export,
    # measurements and audits run on Ray).
    shutil.copytree(base / "local" / "runs", base / "ray" / "runs")
    t0 = time.perf_counter()
    remote = run_sweep(cfg, out=base / "ray", executor=RayExecutor(farm=farm, timeout_s=GET))
    t_ray = time.perf_counter() - t0
    print(f"\nsweep wall: local {t_local:.1f} s, ray {t_ray:.1f} s")
    assert not local.failed and not remote.failed, (local.failed, remote.failed)
    return base, cfg


@pytest.mark.slow
def test_ray_results_equal_the_local_executors(swept):
    base, _ = swept
    local, remote = _runs(base / "local" / "results.db"), _runs(base / "ray" / "results.db")
    assert len(local) == 2 * N_ART
    assert remote.keys() == local.keys()
    for key, row in local.items():
        assert remote[key]["status"] == row["status"] == "ok"
        assert _pred(remote[key]) == _pred(row), key
        assert remote[key]["accuracy"] == row["accuracy"]
    assert _audits(base / "ray" / "results.db") == _audits(base / "local" / "results.db")
    assert len(_audits(base / "local" / "results.db")) == 2 * N_ART


@pytest.mark.slow
def test_one_measurement_per_device_and_devices_in_parallel(swept, cluster):
    base, _ = swept
    _, nodes = cluster
    rows = _runs(base / "ray" / "results.db").values()
    windows = {d: sorted((_window(r) for r in rows if r["device"] == d), key=lambda w: w["start"])
               for d in ("testpi-a", "testpi-b")}
    for dev, ws in windows.items():
        assert len(ws) == N_ART
        assert {w["node"] for w in ws} == {nodes[dev[-1]].node_id}, f"{dev} measured off its node"
        for w1, w2 in zip(ws, ws[1:], strict=False):
            assert w1["end"] <= w2["start"], f"two measurements on {dev} overlap: {w1} {w2}"
    overlaps = [(a, b) for a in windows["testpi-a"] for b in windows["testpi-b"]
                if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlaps, "the two devices never measured at the same time"
    t0 = min(w["start"] for ws in windows.values() for w in ws)
    for dev, ws in windows.items():
        print(f"{dev}: " + ", ".join(f"{w['start'] - t0:.2f}-{w['end'] - t0:.2f}" for w in ws))


@pytest.mark.slow
def test_a_node_killed_mid_sweep_loses_nothing_and_resume_completes(swept, cluster, farm, tmp_path):
    from edgefair.bench.executor import RayExecutor
    from edgefair.bench.sweep import run_sweep

    base, cfg = swept
    c, nodes = cluster
    out = tmp_path / "killed"
    shutil.copytree(base / "ray", out)  # device b's results stay; device a measures everything again
    with sqlite3.connect(out / "results.db") as conn:
        conn.execute("DELETE FROM runs WHERE device = 'testpi-a'")
        conn.execute("DELETE FROM audits WHERE device = 'testpi-a'")
    db = out / "results.db"
    got: list = []
    sweep = threading.Thread(target=lambda: got.append(
        run_sweep(cfg, out=out, executor=RayExecutor(farm=farm, timeout_s=GET, lost_after_s=3))), daemon=True)
    sweep.start()
    deadline = time.time() + GET
    while time.time() < deadline and not (db.exists() and any(
            k[1] == "testpi-a" and r["status"] == "ok" for k, r in _runs(db).items())):
        time.sleep(0.1)
    c.remove_node(nodes["a"], allow_graceful=False)  # node A (and device a's measurement on it) dies
    before_kill = {k: r for k, r in _runs(db).items() if r["status"] == "ok"}
    assert 1 <= sum(k[1] == "testpi-a" for k in before_kill) < N_ART, "the node was not killed mid-run"
    sweep.join(timeout=GET)
    assert not sweep.is_alive() and got, "the sweep did not finish after its node died"
    failed = [f for f in got[0].failed if "testpi-a" in f]
    assert failed and any("device:a" in f for f in failed), got[0].failed
    after = _runs(db)
    for k, r in before_kill.items():
        assert after[k] == r, f"{k} was lost or changed"
    assert all(r["status"] == "ok" for k, r in after.items() if k[1] == "testpi-b")
    lost = [r for k, r in after.items() if r["status"] == "failed"]
    assert lost and all("device:a" in r["error"] for r in lost), [r["error"] for r in lost]
    # device a's host comes back; the resumed sweep measures only what was not finished
    nodes["a"] = c.add_node(num_cpus=1, resources={"device:a": 1})
    c.wait_for_nodes(timeout=GET)
    done = run_sweep(cfg, out=out, executor=RayExecutor(farm=farm, timeout_s=GET))
    assert not done.failed, done.failed
    final = _runs(db)
    assert len(final) == 2 * N_ART and all(r["status"] == "ok" for r in final.values())
    for k, r in after.items():
        if r["status"] == "ok":
            assert final[k] == r, f"{k} was measured again"


def test_device_task_options():
    from edgefair.bench.executor import device_options

    assert device_options("device:pi", "ssh", 4) == {"resources": {"device:pi": 1}, "num_cpus": 0}
    assert device_options("device:here", "local", 4) == {"resources": {"device:here": 1}, "num_cpus": 4}


FARM_ERRORS = {  # farm.toml text -> the start of its one-line error (after "FILE: ")
    "": "devices: no devices",
    '[devices.a]\nnode = "x"\n': "devices.a.spec: missing or not a string",
    '[devices.a]\nspec = "local"\ncolour = 1\n': "devices.a: unknown key 'colour'; allowed keys: spec, node",
    '[devices."a b"]\nspec = "local"\n': "devices.a b: a device name is letters, digits",
    '[devices.a]\nspec = "nosuchprofile"\n': "devices.a.spec: unknown device 'nosuchprofile'",
    '[devices.a]\nspec = "local"\n[devices.b]\nspec = "local"\n': "devices: spec 'local' is named by two devices",
    "devices = [": "not valid TOML",
    'head = "x"\n': "unknown key 'head'; allowed keys: devices",
}


@pytest.mark.parametrize("text", list(FARM_ERRORS))
def test_farm_file_errors_name_the_file_and_key(tmp_path, text):
    message = FARM_ERRORS[text]
    p = tmp_path / "farm.toml"
    p.write_text(text)
    with pytest.raises(FarmError) as e:
        load_farm(p)
    assert str(e.value).startswith(f"{p}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_cli_farm_errors_are_one_line(bench, tmp_path):
    p = tmp_path / "farm.toml"
    p.write_text('[devices.a]\nspec = "local"\nport = 2\n')
    proc = bench("sweep", "--executor", "ray", "--farm", p, "--out", tmp_path / "o")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (f"bench sweep: error: {p}: devices.a: unknown key 'port'; "
                                                    "allowed keys: spec, node")
    proc = bench("sweep", "--farm", p, "--out", tmp_path / "o", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False


@pytest.mark.slow
def test_farm_status_shows_nodes_devices_and_state(swept, cluster, farm, bench):
    c, nodes = cluster
    proc = bench("farm", "status", "--farm", farm.path, "--ray-address", c.address, "--json",
                 "--db", swept[0] / "ray" / "results.db", check=True, timeout=GET)
    doc = json.loads(proc.stdout)
    by_id = {n["node_id"]: n for n in doc["nodes"]}
    assert by_id[nodes["b"].node_id]["alive"] and by_id[nodes["b"].node_id]["devices"] == ["b"]
    devs = {d["device"]: d for d in doc["devices"]}
    assert devs["b"]["node_id"] == nodes["b"].node_id and devs["b"]["spec"] == "testpi-b"
    assert devs["b"]["state"] == "idle" and devs["b"]["driver"]["status"] == "idle"


def test_a_studys_population_trains_as_ray_tasks(cluster, tmp_path):
    """``bench study --executor ray``: each training of the population is a Ray host task; the
    study then finds every one of them finished (cached) instead of training again."""
    from edgefair.bench.executor import RayExecutor
    from edgefair.bench.study.config import load_study
    from edgefair.bench.study.runner import run_train_job, train, train_jobs

    cfg = load_study("compression-fairness", quick=True).with_overrides(seeds=2)
    jobs = train_jobs(cfg, tmp_path)
    runs = RayExecutor(timeout_s=GET).map_host(run_train_job, jobs)
    assert len(set(runs)) == cfg.seeds
    for job, run in zip(jobs, runs, strict=True):
        said: list[str] = []
        assert train(job.cfg, job.out, job.seed, mix=job.mix, say=said.append) == Path(run)
        assert said == [f"train seed {job.seed}: cached ({Path(run).name})"]
