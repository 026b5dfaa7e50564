"""The GPUs a job was given, made the only ones TensorFlow sees, so seeds never share a card.

TensorFlow takes every GPU it can see and puts its work on the first. Two training jobs on one
multi-GPU machine would both land on GPU 0 unless each sees only its own. Who hands GPUs out:

- SLURM (``--gpus`` / ``--gres=gpu:N``, what the slurm profile's ``gpu`` resource becomes) sets
  ``CUDA_VISIBLE_DEVICES`` to the job's GPUs. That list is kept as it is. A SLURM job given no
  GPU sees none: on a node whose GPUs are not fenced off (no cgroup device limits) it would
  otherwise take a card that SLURM gave to another job.
- Snakemake's ``gpu`` resource (``--resources gpu=N``) only counts: it keeps at most N GPU jobs
  running but names no device. Each job therefore claims as many GPUs as it declared with a
  lock file per GPU (``LFWCNN_GPU_LOCK_DIR``, default ``<tmp>/lfwcnn-gpu-locks``), held until
  the process ends (a crash or kill releases it), and sees only those.
- A job that declared no GPU sees none (under SLURM: none unless SLURM gave it some anyway).

Call :func:`claim_job_devices` before TensorFlow is imported: CUDA reads the variable once.
Then :func:`select_device` picks GPU or CPU (``train.device``) among what the job sees.
``python -m lfwcnn.devices --gpus N`` prints what a job with N GPUs would see here.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lfwcnn.atomic import write_text
from lfwcnn.cli import run
from lfwcnn.errors import LfwcnnError

VISIBLE = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_ENV = "LFWCNN_GPU_LOCK_DIR"
# SLURM names a job's GPUs in these too; CUDA_VISIBLE_DEVICES is the one CUDA reads
SLURM_GPU_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")


@dataclass
class DeviceClaim:
    """What a job may use: ``visible`` is its CUDA_VISIBLE_DEVICES (``None``: left unset)."""

    gpus_requested: int
    visible: str | None
    source: str  # slurm | lock | none | no-gpus-here
    note: str = ""
    _locks: list = field(default_factory=list, repr=False)

    @property
    def gpu_ids(self) -> list[str]:
        return parse_visible(self.visible) if self.visible else []

    def record(self) -> dict:
        """The claim as plain data, for a job's run record."""
        return {"gpus_requested": self.gpus_requested, "cuda_visible_devices": self.visible,
                "gpu_source": self.source, "gpu_note": self.note or None}

    def release(self) -> None:
        """Give claimed GPUs back before the process ends (it ends the claim anyway)."""
        for handle in self._locks:
            handle.close()
        self._locks.clear()


def parse_visible(value: str) -> list[str]:
    """``"0,2"`` -> ``["0", "2"]``; ids may also be GPU UUIDs (``GPU-...``)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def count_gpus() -> int:
    """NVIDIA GPUs on this machine, without starting CUDA: the driver's list, else nvidia-smi."""
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        return sum(1 for _ in driver.iterdir())
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 check=False, timeout=30)
        if listing.returncode == 0:
            return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    return 0


def claim_job_devices(
    gpus: int,
    env: MutableMapping[str, str] | None = None,
    *,
    lock_dir: str | os.PathLike | None = None,
    gpu_count: Callable[[], int] = count_gpus,
) -> DeviceClaim:
    """Decide this job's GPUs from its allotment, write CUDA_VISIBLE_DEVICES into ``env``.

    ``gpus`` is what the job declared (the rule's ``gpu`` resource). ``env`` defaults to
    ``os.environ``. Raises :class:`LfwcnnError` when fewer GPUs are free than declared.
    """
    if gpus < 0:
        raise LfwcnnError(f"gpus must be 0 or more, got {gpus}")
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        return _slurm_claim(gpus, env)
    if gpus == 0:
        env[VISIBLE] = ""
        return DeviceClaim(0, "", "none", "no GPU declared: all GPUs hidden")
    return _lock_claim(gpus, env, lock_dir, gpu_count)


def _slurm_claim(gpus: int, env: MutableMapping[str, str]) -> DeviceClaim:
    """What SLURM gave counts, also where it differs from the declaration (a profile's gres)."""
    given = env.get(VISIBLE)
    if given is None:
        # SLURM sets CUDA_VISIBLE_DEVICES with the gres (and unsets it for a job without);
        # fall back on its own variables
        given = next((env[name] for name in SLURM_GPU_VARIABLES if env.get(name)), None)
    if not given:
        env[VISIBLE] = ""
        note = (f"{gpus} GPU(s) declared but SLURM gave this job none"
                " (no --gpus/--gres reached sbatch): all GPUs hidden") if gpus else ""
        return DeviceClaim(gpus, "", "slurm", note)
    env[VISIBLE] = given
    ids = parse_visible(given)
    note = "" if len(ids) == gpus else f"{gpus} GPU(s) declared, SLURM gave {len(ids)}"
    return DeviceClaim(gpus, given, "slurm", note)


def _lock_claim(gpus: int, env: MutableMapping[str, str], lock_dir, gpu_count) -> DeviceClaim:
    preset = env.get(VISIBLE)
    if preset is not None:
        candidates = parse_visible(preset)  # a user's own limit: choose among those
    else:
        candidates = [str(index) for index in range(gpu_count())]
    if not candidates:
        return DeviceClaim(gpus, preset, "no-gpus-here",
                           f"{gpus} GPU(s) declared but this machine shows none")
    if preset is None:
        # CUDA's default order is fastest-first; a lock's id must name one card for all jobs
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    folder = Path(lock_dir or env.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir(),
                                                               "lfwcnn-gpu-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    taken, handles = [], []
    for gpu_id in candidates:
        if len(taken) == gpus:
            break
        handle = open(folder / f"gpu-{gpu_id}.lock", "a")  # noqa: SIM115 - held past return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        taken.append(gpu_id)
        handles.append(handle)
    if len(taken) < gpus:
        for handle in handles:
            handle.close()
        raise LfwcnnError(
            f"{gpus} GPU(s) declared but only {len(taken)} of the {len(candidates)} GPUs here"
            f" ({','.join(candidates)}) are free; other jobs hold the rest (locks in {folder})."
            " Run snakemake with --resources gpu=N, N at most the number of GPUs"
        )
    env[VISIBLE] = ",".join(taken)
    return DeviceClaim(gpus, env[VISIBLE], "lock", _locks=handles)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True, help="GPUs the job declared")
    parser.add_argument("--json", help="also write the claim to this JSON file")
    return parser.parse_args(argv)


def cpu_model() -> str:
    """The CPU's model name, recorded beside the GPUs so CPU timings can be compared."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


DEVICES = ("auto", "cpu", "gpu")


def check_device(device: str, threads: int) -> None:
    if device not in DEVICES:
        raise LfwcnnError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if threads < 0:
        raise LfwcnnError(f"threads must be 0 (TensorFlow's choice) or more, got {threads}")


def select_device(device: str, threads: int) -> dict:
    """Pick GPU or CPU before TensorFlow's runtime starts; return what was picked, for the record.

    ``auto`` takes the GPU when TensorFlow sees one. CUDA_VISIBLE_DEVICES is honoured as given
    (TensorFlow applies it). Memory growth lets several seeds share one GPU when a scheduler
    puts them there.
    """
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # runtime already started (a second run in one process)
            pass
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        visible = os.environ.get(VISIBLE)
        raise LfwcnnError(
            "device gpu was asked for but TensorFlow sees no GPU"
            + (f" ({VISIBLE}={visible!r})" if visible is not None else "")
        )
    use_gpu = bool(gpus) and device != "cpu"
    try:
        if gpus and not use_gpu:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus if use_gpu else []:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # runtime already started; the caller's device scope still holds
        pass
    gpu_name = None
    if use_gpu:
        gpu_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    return {
        "device": "gpu" if use_gpu else "cpu",
        "gpu_name": gpu_name,
        "gpus_seen": len(gpus),
        "cuda_visible_devices": os.environ.get(VISIBLE),
        "threads": threads or None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    claim = claim_job_devices(args.gpus)
    record = {**claim.record(), "hostname": os.uname().nodename,
              "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")


if __name__ == "__main__":
    raise SystemExit(run(main))
