"""``python -m lfwcnn progress``: how far every training of a results folder is, from its files.

Read only: a finished training has its ``train.json`` and ``history.csv``; one under way or
stopped has its backup's last snapshot (:mod:`lfwcnn.snapshots`); a training the config plans
that has neither is not started. Whether a process still writes a snapshot is known only on
the host that wrote it (its pid); elsewhere (a cluster node) only the snapshot's age hints at it,
and the table says so with a question mark.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from lfwcnn.atomic import process_alive
from lfwcnn.cli import OneLineParser
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import LATEST
from lfwcnn.run_record import duration, read_history_csv, time_left
from lfwcnn.snapshots import read_latest

SEED_FOLDER = re.compile(r"seed(\d+)")
COLUMNS = ("run", "seed", "state", "epoch", "test acc", "trained", "left", "last epoch")


def planned(configfiles: Sequence[str | Path]) -> dict[tuple[str, int], int]:
    """(run, seed) -> epochs of every training the config plans, as the workflow plans them."""
    from lfwcnn.config import DEFAULT_CONFIG, check_config, load_config
    from lfwcnn.sweep import plan_sweep

    config = load_config([DEFAULT_CONFIG, *configfiles])
    runs = plan_sweep(config, check=check_config).runs.values()
    return {(run.name, seed): run.config["train"]["epochs"]
            for run in runs for seed in config["seeds"]}


def writer_state(state: dict, age: float, pace: float) -> str:
    """Whether the process that wrote the snapshot still runs: by its pid on its own host,
    elsewhere (or for a snapshot without pid) guessed from the age against the epoch pace."""
    if state.get("host") == socket.gethostname() and isinstance(state.get("pid"), int):
        return "running" if process_alive(state["pid"]) else "stopped"
    return "running?" if age < 3 * pace + 60 else "stopped?"


def _latest(backup: Path) -> tuple[Path, dict, list[dict]] | None:
    """The last snapshot; read again when the training pruned the one just named."""
    for _ in range(2):
        try:
            return read_latest(backup)
        except LfwcnnError:
            time.sleep(0.2)
    return read_latest(backup)


def training(folder: Path, epochs: int | None, now: float) -> dict:
    """One training's row: state, epochs done of ``epochs``, last test accuracy, times."""
    row = {"state": "not started", "epoch": 0, "epochs": epochs, "test_accuracy": None,
           "seconds": None, "seconds_left": None, "last_epoch_age": None}
    backup = folder / "backup"
    try:
        latest = _latest(backup)
        if latest is None and (folder / "train.json").is_file():
            history = read_history_csv(folder / "history.csv")
            row.update(state="finished", epochs=len(history))
    except (LfwcnnError, OSError, ValueError, KeyError):
        return {**row, "state": "unreadable"}
    if latest is not None:
        _, state, history = latest
        row.update(epochs=state.get("epochs", epochs),
                   last_epoch_age=round(now - (backup / LATEST).stat().st_mtime, 1))
    elif row["state"] != "finished":
        # a backup folder is claimed by the step before its first epoch
        return {**row, "state": "no epoch yet"} if backup.is_dir() else row
    seconds = sum(r["seconds"] for r in history)
    row.update(epoch=len(history), test_accuracy=history[-1]["test_accuracy"] if history else None,
               seconds=round(seconds, 1))
    if latest is not None:
        row["state"] = writer_state(state, row["last_epoch_age"], seconds / max(len(history), 1))
        if row["epochs"] is not None:
            left = time_left(history, row["epochs"])
            if row["state"] == "running":  # the epoch under way began at the last snapshot
                left = max(left - row["last_epoch_age"], 0.0)
            row["seconds_left"] = round(left, 1)
    return row


def trainings(results: Path, plan: dict[tuple[str, int], int] | None = None) -> list[dict]:
    """Every training under ``results/models`` and every one ``plan`` names, by run and seed."""
    if not results.is_dir():
        raise LfwcnnError(f"{results}: no such folder (give the results folder with --results)")
    plan = plan or {}
    found = {(run.name, int(m[1])): run / m[0] for run in sorted((results / "models").glob("*"))
             if run.is_dir() for seed in run.iterdir() if (m := SEED_FOLDER.fullmatch(seed.name))}
    now = time.time()
    return [{"run": run, "seed": seed,
             **training(found.get((run, seed), results / "models" / run / f"seed{seed}"),
                        plan.get((run, seed)), now)}
            for run, seed in sorted({*found, *plan})]


def table(rows: list[dict]) -> str:
    """One aligned line per training, under a header."""
    def cells(row: dict) -> tuple[str, ...]:
        epochs = "?" if row["epochs"] is None else row["epochs"]
        accuracy, age = row["test_accuracy"], row["last_epoch_age"]
        return (row["run"], str(row["seed"]), row["state"], f"{row['epoch']}/{epochs}",
                "" if accuracy is None else f"{100 * accuracy:.2f} %",
                "" if row["seconds"] is None else duration(row["seconds"]),
                "" if row["seconds_left"] is None else duration(row["seconds_left"]),
                "" if age is None else f"{duration(age)} ago")

    lines = [COLUMNS, *map(cells, rows)]
    widths = [max(len(line[k]) for line in lines) for k in range(len(COLUMNS))]
    right = {1, 3, 4}  # seed, epoch, test acc: numbers line up on the right
    return "\n".join("  ".join(cell.rjust(w) if k in right else cell.ljust(w)
                               for k, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print how far every training of a results folder is: run, seed, state, epoch of
    epochs, last test accuracy, training time so far and left, age of the last snapshot."""
    parser = OneLineParser(prog="python -m lfwcnn progress", description=main.__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                        help="the results folder (default: results)")
    parser.add_argument("--configfile", action="extend", nargs="+", default=[], metavar="FILE",
                        help="the overlays the run was started with, as snakemake takes them: "
                             "its planned trainings not started yet are listed too")
    parser.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    args = parser.parse_args(argv)
    rows = trainings(args.results, planned(args.configfile))
    print(json.dumps(rows, indent=1) if args.json else table(rows))
