import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_card.py"


def test_model_card_prints_header(untrained_model):
    out = subprocess.run([sys.executable, str(SCRIPT), str(untrained_model)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "resnet18" in out.stdout and "DEM" in out.stdout and "untrained" in out.stdout


def test_model_card_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.gmm"
    bad.write_bytes(b"nope")
    out = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "bad.gmm" in out.stderr
