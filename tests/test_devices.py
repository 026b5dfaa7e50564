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


@pytest.mark.parametrize("argv", [[], ["--gpus", "two"], ["--gpus", "1", "--colour"]])
def test_cli_usage_errors_are_one_line(argv, capsys):
    from lfwcnn.cli import run

    assert run(main, argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "python -m lfwcnn.devices --help" in err


# ---------------------------------------------------------------- train.per_gpu: slots per GPU


def test_two_per_gpu_spreads_four_jobs_two_and_two_and_a_fifth_fails(tmp_path):
    envs = [{} for _ in range(5)]
    claims = [claim_job_devices(1, env, lock_dir=tmp_path, gpu_count=two_gpus, per_gpu=2)
              for env in envs[:4]]
    # the GPU with the most free slots first: 0, 1, then 0, 1 again
    assert [claim.visible for claim in claims] == ["0", "1", "0", "1"]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs[:4]] == ["0", "1", "0", "1"]
    assert [claim.slots for claim in claims] == [[0], [0], [1], [1]]
    assert claims[2].record()["per_gpu"] == 2 and claims[2].record()["gpu_slots"] == [1]
    with pytest.raises(LfwcnnError, match=r"^1 GPU\(s\) declared but only 0 of the 2 GPUs here"
                       r" \(0,1\) have one of their 2 slots \(train.per_gpu\) free; .*"
                       r"--resources gpu=N, N at most 2 x the number of GPUs$"):
        claim_job_devices(1, envs[4], lock_dir=tmp_path, gpu_count=two_gpus, per_gpu=2)
    assert "CUDA_VISIBLE_DEVICES" not in envs[4]
    claims[1].release()  # a slot of GPU 1 comes free: the next job goes there
    fifth = claim_job_devices(1, envs[4], lock_dir=tmp_path, gpu_count=two_gpus, per_gpu=2)
    assert fifth.visible == "1" and fifth.slots == [0]
    for claim in [*claims, fifth]:
        claim.release()


def test_a_job_of_several_gpus_takes_a_slot_on_each_of_the_least_busy(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    busy = claim_job_devices(1, dict(env), lock_dir=tmp_path, per_gpu=3)
    assert busy.visible == "0"
    pair = claim_job_devices(2, dict(env), lock_dir=tmp_path, per_gpu=3)
    assert pair.visible == "1,2" and pair.gpu_ids == ["1", "2"] and pair.slots == [0, 0]
    third = claim_job_devices(2, dict(env), lock_dir=tmp_path, per_gpu=3)
    assert third.visible == "0,1"  # ties (2 free on each) in the listed order
    # free slots now 1, 1, 2: single jobs take GPU 2, then 0, then 1 ...
    singles = [claim_job_devices(1, dict(env), lock_dir=tmp_path, per_gpu=3) for _ in range(3)]
    assert [claim.visible for claim in singles] == ["2", "0", "1"]
    # ... and a job of two GPUs needs two GPUs with a free slot, not two slots of one GPU
    with pytest.raises(LfwcnnError, match=r"2 GPU\(s\) declared but only 1 of the 3 GPUs"):
        claim_job_devices(2, dict(env), lock_dir=tmp_path, per_gpu=3)
    for claim in [busy, pair, third, *singles]:
        claim.release()


def test_one_per_gpu_keeps_the_lock_names_and_shares_slot_0_with_larger_per_gpu(tmp_path):
    alone = claim_job_devices(1, {}, lock_dir=tmp_path, gpu_count=two_gpus)
    assert alone.visible == "0" and alone.record()["per_gpu"] == 1
    assert {path.name for path in tmp_path.glob("gpu-*")} == {"gpu-0.lock", "gpu-1.lock"}
    # a per_gpu 2 job at the same time counts GPU 0 as half taken: it goes to GPU 1 ...
    shared = claim_job_devices(1, {}, lock_dir=tmp_path, gpu_count=two_gpus, per_gpu=2)
    assert shared.visible == "1" and shared.slots == [0]
    # ... and a per_gpu 1 job finds no GPU free
    with pytest.raises(LfwcnnError, match=r"^1 GPU\(s\) declared but only 0 of the 2 GPUs here"
                       r" \(0,1\) are free; other jobs hold the rest"):
        claim_job_devices(1, {}, lock_dir=tmp_path, gpu_count=two_gpus)
    alone.release()
    shared.release()


def test_slurm_shard_is_kept_without_a_note():
    # train.per_gpu > 1 under the slurm profile: no whole GPU declared, a shard given
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0"}
    claim = claim_job_devices(0, env, per_gpu=2)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and claim.note == "" and claim.source == "slurm"
    assert "per_gpu" not in claim.record()  # the slot is SLURM's; train.json has per_gpu


def test_per_gpu_below_one_is_refused():
    with pytest.raises(LfwcnnError, match="per_gpu must be 1 or more, got 0"):
        claim_job_devices(1, {}, per_gpu=0)


HOLDER_PER_GPU = """
import sys
from lfwcnn.devices import claim_job_devices
claim = claim_job_devices(1, per_gpu=2)
print(claim.visible, flush=True)
sys.stdin.read()
"""


def test_per_gpu_slots_hold_across_processes_started_at_once(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "LFWCNN_GPU_LOCK_DIR": str(tmp_path)}
    env.pop("SLURM_JOB_ID", None)
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER_PER_GPU], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(5)]
    try:
        seen = [holder.stdout.readline().strip() for holder in holders]
        # four found a slot, two per GPU; the fifth failed (printing no GPU) and says why
        assert sorted(seen) == ["", "0", "0", "1", "1"]
        failed = holders[seen.index("")]
        assert failed.wait(timeout=30) == 1
        assert "have one of their 2 slots (train.per_gpu) free" in failed.stderr.read()
    finally:
        for holder in holders:
            holder.stdin.close()
            holder.wait(timeout=30)
