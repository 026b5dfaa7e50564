"""The workflow's own style checks, run with the tests so CI runs them: `snakefmt --check`
(Snakemake's formatter, black for the Python in rules) and `snakemake --lint`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def test_snakefmt_finds_nothing_to_change():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = run(str(snakefmt), "--check", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean():
    result = run(sys.executable, "-m", "snakemake", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
