"""One SASRec (prefix rows) epoch on ml-100k through the runner, anomaly mode off vs on.

RecBole's sine.py turns autograd anomaly detection on at import; the plugin turns it off. This
measures what that costs: one run each way, same machine, one epoch. Writes
benchmarks/results/anomaly_ml100k.json. Run: python benchmarks/anomaly_epoch.py
"""

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_rimirec import compat  # noqa: E402
from recbole_rimirec.quick_start import run  # noqa: E402


def one_epoch(anomaly: bool) -> float:
    original = compat._anomaly_off
    if anomaly:
        compat._anomaly_off = lambda: (original(), torch.autograd.set_detect_anomaly(True))
    try:
        result = run("SASRec", "ml-100k", config_dict={"epochs": 1, "show_progress": False, "state": "WARNING"})
    finally:
        compat._anomaly_off = original
        torch.autograd.set_detect_anomaly(False)
    return result["timings"]["epoch_s"][0]


if __name__ == "__main__":
    out = {"model": "SASRec", "dataset": "ml-100k", "train_mode": "prefixes", "machine": "2-core CPU"}
    out["epoch_s_anomaly_off"] = one_epoch(False)
    out["epoch_s_anomaly_on"] = one_epoch(True)
    out["ratio_on_over_off"] = out["epoch_s_anomaly_on"] / out["epoch_s_anomaly_off"]
    path = ROOT / "benchmarks" / "results" / "anomaly_ml100k.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
