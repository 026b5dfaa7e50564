"""The GPUs a job was given, made the only ones TensorFlow sees, so seeds never share a card.

Under SLURM the job's CUDA_VISIBLE_DEVICES is kept (given none, it sees none: a node without
cgroup device limits would let it take another job's card). Snakemake's ``gpu`` resource only
counts jobs, so each job locks as many GPUs as it declared (a file per GPU in
``LFWCNN_GPU_LOCK_DIR``, default ``<tmp>/lfwcnn-gpu-locks``, held until the process ends).
Claim before TensorFlow is imported: CUDA reads the variable once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
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


def claim_job_devices(gpus: int, env: MutableMapping[str, str] | None = None, *,
                      lock_dir: str | os.PathLike | None = None,
                      gpu_count: Callable[[], int] = count_gpus) -> DeviceClaim:
    """Decide the GPUs of a job that declared ``gpus`` and write CUDA_VISIBLE_DEVICES into
    ``env`` (default ``os.environ``); one line when fewer GPUs are free than declared."""
    if gpus < 0:
        raise LfwcnnError(f"gpus must be 0 or more, got {gpus}")
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        # What SLURM gave counts, also where it differs from the declaration (a profile's gres).
        # It sets CUDA_VISIBLE_DEVICES with the gres (unsets it without); else its own variables.
        given = env.get(VISIBLE, next((env[name] for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
                                       if env.get(name)), None))
        env[VISIBLE] = given = given or ""
        n = len(parse_visible(given))
        note = "" if n == gpus else (f"{gpus} GPU(s) declared, SLURM gave {n}" if given else
                                     f"{gpus} GPU(s) declared but SLURM gave this job none"
                                     " (no --gpus/--gres reached sbatch): all GPUs hidden")
        return DeviceClaim(gpus, given, "slurm", note)
    if gpus == 0:
        env[VISIBLE] = ""
        return DeviceClaim(0, "", "none", "no GPU declared: all GPUs hidden")
    preset = env.get(VISIBLE)  # a user's own limit: choose among those
    candidates = parse_visible(preset) if preset is not None else [
        str(index) for index in range(gpu_count())]
    if not candidates:
        return DeviceClaim(gpus, preset, "no-gpus-here",
                           f"{gpus} GPU(s) declared but this machine shows none")
    if preset is None:
        # CUDA's default order is fastest-first; a lock's id must name one card for all jobs
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    folder = Path(lock_dir or env.get("LFWCNN_GPU_LOCK_DIR")
                  or Path(tempfile.gettempdir(), "lfwcnn-gpu-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    locks = {}
    for gpu_id in candidates:
        if len(locks) == gpus:
            break
        handle = open(folder / f"gpu-{gpu_id}.lock", "a")  # noqa: SIM115 - held past return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locks[gpu_id] = handle
        except BlockingIOError:
            handle.close()
    if len(locks) < gpus:
        for handle in locks.values():
            handle.close()
        raise LfwcnnError(f"{gpus} GPU(s) declared but only {len(locks)} of the {len(candidates)}"
                          f" GPUs here ({','.join(candidates)}) are free; other jobs hold the rest"
                          f" (locks in {folder}). Run snakemake with --resources gpu=N, N at most"
                          " the number of GPUs")
    env[VISIBLE] = ",".join(locks)
    return DeviceClaim(gpus, env[VISIBLE], "lock", _locks=list(locks.values()))


# The vector extensions that decide which kernels oneDNN and Eigen run, so how they round
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                     "amx_bf16", "asimd", "sve")


def _cpuinfo(*keys: str) -> str | None:
    """The first value of one of ``keys`` in /proc/cpuinfo (None elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() in keys:
                return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's model name, recorded beside the GPUs so CPU timings can be compared."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def numerics() -> dict:
    """What decides how this machine rounds (the same seed elsewhere gives other weights):
    CPU and its vector extensions, oneDNN on or off, TensorFlow's build, the GPU driver."""
    import tensorflow as tf

    flags = set((_cpuinfo("flags", "features") or "").split())
    build = tf.sysconfig.get_build_info()
    return {"cpu": cpu_model(), "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
            # TensorFlow's default on x86-64 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns it off
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false"),
            "tensorflow": tf.__version__,
            "tensorflow_build": (f"CUDA {build.get('cuda_version')}, cuDNN "
                                 f"{build.get('cudnn_version')}" if build.get("is_cuda_build")
                                 else "CPU only"),
            "gpu_driver": _nvidia_driver()}


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version ("Kernel Module  550.54.15"), None without one."""
    with contextlib.suppress(OSError):
        found = re.search(r"Kernel Module\s+(\S+)", Path("/proc/driver/nvidia/version").read_text())
        return found.group(1) if found else None
    return None


def select_device(device: str, threads: int) -> dict:
    """Pick GPU or CPU (``auto``: the GPU if TensorFlow sees one) before TensorFlow's runtime
    starts; return what was picked, for the record."""
    import tensorflow as tf

    # RuntimeError: the runtime started already (a second run in one process); the caller's
    # device scope still holds
    with contextlib.suppress(RuntimeError):
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        visible = os.environ.get(VISIBLE)
        raise LfwcnnError("device gpu was asked for but TensorFlow sees no GPU"
                          + (f" ({VISIBLE}={visible!r})" if visible is not None else ""))
    use_gpu = bool(gpus) and device != "cpu"
    with contextlib.suppress(RuntimeError):
        if gpus and not use_gpu:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus if use_gpu else []:  # so that seeds a scheduler puts on one GPU fit
            tf.config.experimental.set_memory_growth(gpu, True)
    details = tf.config.experimental.get_device_details(gpus[0]) if use_gpu else {}
    return {"device": "gpu" if use_gpu else "cpu", "gpu_name": details.get("device_name"),
            "gpus_seen": len(gpus), "cuda_visible_devices": os.environ.get(VISIBLE),
            "threads": threads or None, "cpu": cpu_model(), "cores": os.cpu_count()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True, help="GPUs the job declared")
    parser.add_argument("--json", help="also write the claim to this JSON file")
    args = parser.parse_args(argv)
    record = {**claim_job_devices(args.gpus).record(), "hostname": os.uname().nodename,
              "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")


if __name__ == "__main__":
    raise SystemExit(run(main))
