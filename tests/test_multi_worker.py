"""Issue 26.10: ``strategy: multi_worker`` run for real: two worker processes on localhost (TF_CONFIG with two loopback
ports) train a few steps; both finish, only the chief writes the run, and its weights equal those of one process with
two replicas on the same global batch (the same sum of per-replica losses, so the same arithmetic). That one process
is ``strategy: mirrored`` on two logical CPU devices standing in for two GPUs (devices are fixed once TF starts: a
fresh process)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiny_config

pytestmark = pytest.mark.slow

TWO_CPUS = ("import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); ")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def checkpoint_values(prefix: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {k: tf.train.load_variable(prefix, k) for k, _ in tf.train.list_variables(prefix) if k.startswith("model/")}


def test_two_workers_on_localhost_train_like_one_process_with_two_replicas(tiny_records, tmp_path):
    # the shipped face-mask detector as the start (no random initialisation to match), no augmentation, 3 steps
    common = dict(train_records=tiny_records["four"], val_records="", steps=3, batch_size=2, image_size=96, log_every=1,
                  checkpoint_every=3, pretrained="face_mask", aug_hflip=False, aug_scale_min=1.0, aug_scale_max=1.0,
                  aug_color=False, warmup_steps=0)
    multi = tiny_config(tiny_records, tmp_path / "multi", strategy="multi_worker", **common)
    one = tiny_config(tiny_records, tmp_path / "one", strategy="mirrored", **common)
    multi.save(tmp_path / "multi.yaml")
    one.save(tmp_path / "one.yaml")
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    scratch_before = set(Path(tempfile.gettempdir()).glob("mask_od-worker-*"))
    base = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    train = str(ROOT / "scripts" / "train.py")
    workers = [subprocess.Popen([sys.executable, train, str(tmp_path / "multi.yaml")], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env=dict(base, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
               for i in range(2)]
    code = TWO_CPUS + (f"from mask_od.config import build_config; from mask_od.train import train; "
                       f"print('STEP', train(build_config({str(tmp_path / 'one.yaml')!r}), progress=False).step)")
    reference = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=base, cwd=ROOT)
    outs = []
    try:
        for w in workers:
            outs.append(w.communicate(timeout=900)[0])
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, out in zip(workers, outs):
        assert w.returncode == 0, out[-3000:]
        assert "CollectiveAllReduceStrategy: 2 replica(s), global batch 4" in out, out[-3000:]  # MultiWorkerMirroredStrategy
    assert reference.returncode == 0 and "STEP 3" in reference.stdout, reference.stderr[-3000:]
    assert "MirroredStrategy: 2 replica(s), global batch 4" in reference.stdout, reference.stdout[-3000:]
    log = [json.loads(x) for x in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    # only the chief wrote the run: one checkpoint of step 3, its config and log; no worker folder left behind
    run = tmp_path / "multi"
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == ["ckpt-3.index"]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 3
    assert set(Path(tempfile.gettempdir()).glob("mask_od-worker-*")) == scratch_before  # the other worker's copy is gone
    got, want = checkpoint_values(str(run / "checkpoints" / "ckpt-3")), checkpoint_values(str(tmp_path / "one" / "checkpoints" / "ckpt-3"))
    assert got.keys() == want.keys() and len(got) > 100
    start = checkpoint_values(str(ROOT / "models" / "face_mask" / "checkpoint" / "model"))
    moved = [k for k in got if k in start and got[k].shape == start[k].shape and not np.allclose(got[k], start[k])]
    assert len(moved) > 50  # it trained
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)
