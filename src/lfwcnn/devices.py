"""The GPUs a job was given, made the only ones TensorFlow sees, so seeds share a card only
as asked (``train.per_gpu``).

Under SLURM the job's CUDA_VISIBLE_DEVICES is kept (given none, it sees none: a node without
cgroup device limits would let it take another job's card); a job given a GPU shard sees the
GPU SLURM set. Snakemake's ``gpu`` resource only counts jobs, so locally each GPU has
``per_gpu`` slots and a job locks one slot on each of as many GPUs as it declared, the GPUs with
the most free slots first (a file per slot in ``LFWCNN_GPU_LOCK_DIR``, default
``<tmp>/lfwcnn-gpu-locks``, held until the process ends). Claim before TensorFlow is imported:
CUDA reads the variable once.
"""

from __future__ import annotations

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
from lfwcnn.cli import OneLineParser, run
from lfwcnn.errors import LfwcnnError

VISIBLE = "CUDA_VISIBLE_DEVICES"


@dataclass
class DeviceClaim:
    """What a job may use: ``visible`` is its CUDA_VISIBLE_DEVICES (``None``: left unset)."""

    gpus_requested: int
    visible: str | None
    source: str  # slurm | lock | none | no-gpus-here
    note: str = ""
    per_gpu: int = 1  # trainings each GPU takes at once (train.per_gpu)
    slots: list[int] = field(default_factory=list)  # source lock: the slot held on each GPU
    _locks: list = field(default_factory=list, repr=False)

    @property
    def gpu_ids(self) -> list[str]:
        return parse_visible(self.visible) if self.visible else []

    def record(self) -> dict:
        slots = {"per_gpu": self.per_gpu, "gpu_slots": self.slots} if self.source == "lock" else {}
        return {"gpus_requested": self.gpus_requested, "cuda_visible_devices": self.visible,
                "gpu_source": self.source, "gpu_note": self.note or None, **slots}

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


def slot_lock_name(gpu_id: str, slot: int) -> str:
    """The lock file of slot ``slot`` of a GPU; slot 0 is the GPU's lock of one training per GPU,
    so that jobs of per_gpu 1 and of per_gpu K running at once still count each other."""
    return f"gpu-{gpu_id}.lock" if slot == 0 else f"gpu-{gpu_id}.slot{slot}.lock"


def _try_lock(path: Path):
    handle = open(path, "a")  # noqa: SIM115 - held past return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _take_slots(folder: Path, candidates: list[str], gpus: int,
                per_gpu: int) -> tuple[dict[str, tuple[int, object]], int]:
    """One free slot on each of ``gpus`` GPUs, those with the most free slots first (ties: the
    first listed); fewer where fewer GPUs have one. Also: how many GPUs have a free slot.

    Claims take turns (one lock on the folder, held for the look only), so that a look, which
    holds every free slot for a moment to count them, never makes another claim see a slot
    taken."""
    with open(folder / "claim.lock", "a") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        free = {gpu_id: [(slot, handle) for slot in range(per_gpu)
                         if (handle := _try_lock(folder / slot_lock_name(gpu_id, slot)))]
                for gpu_id in candidates}
        order = sorted(candidates, key=lambda gpu_id: -len(free[gpu_id]))  # stable: ties in order
        chosen = {gpu_id: free[gpu_id][0] for gpu_id in order[:gpus] if free[gpu_id]}
        for gpu_id, held in free.items():
            for slot, handle in held:
                if chosen.get(gpu_id, (None,))[0] != slot:
                    handle.close()
    return ({gpu_id: chosen[gpu_id] for gpu_id in candidates if gpu_id in chosen},
            sum(1 for held in free.values() if held))


def claim_job_devices(gpus: int, env: MutableMapping[str, str] | None = None, *,
                      lock_dir: str | os.PathLike | None = None,
                      gpu_count: Callable[[], int] = count_gpus, per_gpu: int = 1) -> DeviceClaim:
    """Decide the GPUs of a job that declared ``gpus`` and write CUDA_VISIBLE_DEVICES into
    ``env`` (default ``os.environ``); one line when fewer GPUs are free than declared.
    ``per_gpu``: trainings each GPU takes at once (train.per_gpu); a job takes one slot of a GPU."""
    if gpus < 0:
        raise LfwcnnError(f"gpus must be 0 or more, got {gpus}")
    if per_gpu < 1:
        raise LfwcnnError(f"per_gpu must be 1 or more, got {per_gpu}")
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        # What SLURM gave counts, also where it differs from the declaration (a profile's gres).
        # It sets CUDA_VISIBLE_DEVICES with the gres (unsets it without); else its own variables.
        # A GPU shard (train.per_gpu > 1 under the slurm profile) sets it too: the shared GPU.
        given = env.get(VISIBLE, next((env[name] for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
                                       if env.get(name)), None))
        env[VISIBLE] = given = given or ""
        n = len(parse_visible(given))
        shared = per_gpu > 1 and gpus == 0 and n > 0  # a shard: the rule declared no whole GPU
        note = "" if n == gpus or shared else (
            f"{gpus} GPU(s) declared, SLURM gave {n}" if given else
            f"{gpus} GPU(s) declared but SLURM gave this job none"
            " (no --gpus/--gres reached sbatch): all GPUs hidden")
        return DeviceClaim(gpus, given, "slurm", note, per_gpu=per_gpu)
    if gpus == 0:
        env[VISIBLE] = ""
        return DeviceClaim(0, "", "none", "no GPU declared: all GPUs hidden", per_gpu=per_gpu)
    preset = env.get(VISIBLE)  # a user's own limit: choose among those
    candidates = parse_visible(preset) if preset is not None else [
        str(index) for index in range(gpu_count())]
    if not candidates:
        return DeviceClaim(gpus, preset, "no-gpus-here",
                           f"{gpus} GPU(s) declared but this machine shows none", per_gpu=per_gpu)
    if preset is None:
        # CUDA's default order is fastest-first; a lock's id must name one card for all jobs
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    folder = Path(lock_dir or env.get("LFWCNN_GPU_LOCK_DIR")
                  or Path(tempfile.gettempdir(), "lfwcnn-gpu-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    locks, free = _take_slots(folder, candidates, gpus, per_gpu)
    if len(locks) < gpus:
        for _, handle in locks.values():
            handle.close()
        if per_gpu == 1:
            raise LfwcnnError(
                f"{gpus} GPU(s) declared but only {free} of the {len(candidates)} GPUs here"
                f" ({','.join(candidates)}) are free; other jobs hold the rest (locks in"
                f" {folder}). Run snakemake with --resources gpu=N, N at most the number of GPUs")
        raise LfwcnnError(
            f"{gpus} GPU(s) declared but only {free} of the {len(candidates)} GPUs here"
            f" ({','.join(candidates)}) have one of their {per_gpu} slots (train.per_gpu) free;"
            f" other jobs hold the rest (locks in {folder}). Run snakemake with --resources"
            f" gpu=N, N at most {per_gpu} x the number of GPUs")
    env[VISIBLE] = ",".join(locks)
    return DeviceClaim(gpus, env[VISIBLE], "lock", per_gpu=per_gpu,
                       slots=[slot for slot, _ in locks.values()],
                       _locks=[handle for _, handle in locks.values()])


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
    """What decides how this machine rounds (the same seed elsewhere gives other weights), beside
    the CPU model and GPU name of :func:`select_device` and the versions of the run record: the
    CPU's vector extensions, oneDNN on or off, TensorFlow's build, the GPU driver."""
    import tensorflow as tf

    flags = set((_cpuinfo("flags", "features") or "").split())
    build = tf.sysconfig.get_build_info()
    return {"vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
            # TensorFlow's default on x86-64 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns it off
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false"),
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
    parser = OneLineParser(prog="python -m lfwcnn.devices", description=__doc__.splitlines()[0])
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
