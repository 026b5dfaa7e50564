"""A job's GPU allotment (SLURM's CUDA_VISIBLE_DEVICES, or Snakemake's gpu count) as it sees it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lfwcnn.devices import claim_job_devices, main
from lfwcnn.errors import LfwcnnError

ROOT = Path(__file__).resolve().parents[1]

# A job process that claims GPUs as a training job would and holds them until stdin closes.
HOLDER = """
import sys
from lfwcnn.devices import claim_job_devices
claim = claim_job_devices(int(sys.argv[1]))
print(claim.visible, flush=True)
sys.stdin.read()
"""


def two_gpus() -> int:
    return 2


def test_no_gpu_declared_hides_every_gpu(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    claim = claim_job_devices(0, env, lock_dir=tmp_path, gpu_count=two_gpus)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and claim.gpu_ids == [] and claim.source == "none"


def test_slurm_allotment_is_kept_as_given():
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_GPUS": "1"}
    claim = claim_job_devices(1, env)
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert claim.record() == {"gpus_requested": 1, "cuda_visible_devices": "1",
                              "gpu_source": "slurm", "gpu_note": None}


def test_slurm_gpu_variables_fill_in_a_missing_visible_list():
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "2,3"}
    claim = claim_job_devices(1, env)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and claim.gpu_ids == ["2", "3"]
    assert claim.note == "1 GPU(s) declared, SLURM gave 2"


def test_slurm_job_without_gpus_sees_none_and_says_why():
    env = {"SLURM_JOB_ID": "7"}
    claim = claim_job_devices(1, env)
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert "SLURM gave this job none" in claim.note
    quiet = claim_job_devices(0, env)
    assert quiet.visible == "" and quiet.note == ""


def test_slurm_allotment_wins_over_a_declaration_of_none():
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0", "SLURM_STEP_GPUS": "0"}
    claim = claim_job_devices(0, env)  # e.g. gres: gpu:1 set in a profile, gpu=0 on the rule
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert claim.note == "0 GPU(s) declared, SLURM gave 1"


def test_local_jobs_claim_different_gpus_and_a_surplus_job_fails_clearly(tmp_path):
    first_env, second_env, third_env = {}, {}, {}
    first = claim_job_devices(1, first_env, lock_dir=tmp_path, gpu_count=two_gpus)
    second = claim_job_devices(1, second_env, lock_dir=tmp_path, gpu_count=two_gpus)
    assert {first.visible, second.visible} == {"0", "1"}
    assert first_env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    with pytest.raises(LfwcnnError, match=r"1 GPU\(s\) declared but only 0 of the 2 GPUs here"):
        claim_job_devices(1, third_env, lock_dir=tmp_path, gpu_count=two_gpus)
    assert "CUDA_VISIBLE_DEVICES" not in third_env
    first.release()
    third = claim_job_devices(1, third_env, lock_dir=tmp_path, gpu_count=two_gpus)
    assert third.visible == first.visible
    second.release()
    third.release()


def test_two_gpus_for_one_job_and_a_user_limit(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3,5,6"}  # the user's own limit: choose among those
    claim = claim_job_devices(2, env, lock_dir=tmp_path, gpu_count=two_gpus)
    assert env["CUDA_VISIBLE_DEVICES"] == "3,5" and claim.source == "lock"
    claim.release()


def test_machine_without_gpus_leaves_the_environment_alone(tmp_path):
    env = {}
    claim = claim_job_devices(1, env, lock_dir=tmp_path, gpu_count=lambda: 0)
    assert env == {} and claim.visible is None and claim.source == "no-gpus-here"


def test_negative_gpus_is_refused():
    with pytest.raises(LfwcnnError, match="gpus must be 0 or more, got -1"):
        claim_job_devices(-1, {})


def _holder(gpus: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(gpus)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_claims_hold_across_processes_until_the_process_ends(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "LFWCNN_GPU_LOCK_DIR": str(tmp_path)}
    env.pop("SLURM_JOB_ID", None)
    first, second = _holder(1, env), _holder(1, env)
    try:
        seen = {first.stdout.readline().strip(), second.stdout.readline().strip()}
        assert seen == {"0", "1"}
        third = subprocess.run([sys.executable, "-m", "lfwcnn.devices", "--gpus", "1"], env=env,
                               capture_output=True, text=True, check=False)
        assert third.returncode == 1
        assert "error: 1 GPU(s) declared but only 0 of the 2 GPUs here (0,1)" in third.stderr
        first.kill()  # a killed job gives its GPU back
        first.wait()
        fourth = subprocess.run([sys.executable, "-m", "lfwcnn.devices", "--gpus", "1"], env=env,
                                capture_output=True, text=True, check=True)
        assert json.loads(fourth.stdout)["cuda_visible_devices"] in seen
    finally:
        for process in (first, second):
            process.stdin.close()
            process.wait(timeout=30)


def test_cli_writes_the_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    main(["--gpus", "1", "--json", str(tmp_path / "claim.json")])
    record = json.loads((tmp_path / "claim.json").read_text())
    assert record["cuda_visible_devices"] == "1" and record["slurm_job_id"] == "42"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
