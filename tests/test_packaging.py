"""A wheel carries what the package needs to run: every shipped hardware profile."""

from __future__ import annotations

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
