"""A wheel carries what the package needs to run: every shipped hardware profile."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_wheel_ships_every_hardware_profile(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("specsim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"simulator/hardware_profiles/{p.relative_to(ROOT / 'hardware_profiles')}"
               for p in (ROOT / "hardware_profiles").glob("*/*") if p.suffix in (".yaml", ".csv")}
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
    assert "simulator/quickstart.yaml" in names


@pytest.mark.slow
def test_the_wheel_installed_outside_the_checkout_runs_the_quickstart(tmp_path):
    """Built, installed into a fresh virtual environment (the dependencies from this one's site
    packages, the package itself from the wheel alone) and run from a folder outside the checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("specsim-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This environment's site packages (a virtual environment's own when the tests run in one, which
    # --system-site-packages would miss) on the new one's path; a directory named in a .pth file is
    # not scanned for .pth files itself, so the checkout's editable-install hook stays out.
    (venv_site,) = (venv / "lib").glob("python3*/site-packages")
    (venv_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    where = subprocess.run([str(python), "-c", "import simulator; print(simulator.__file__)"], cwd=tmp_path,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(venv)), where  # not the checkout's editable install
    run = subprocess.run([str(venv / "bin" / "specsim"), "run", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import json

    assert json.loads(run.stdout)["throughput_tokens_per_s"] > 0
