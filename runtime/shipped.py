"""The model and clip shipped inside the package (runtime/assets/)."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_MODEL = ASSETS / "ictal-chb.onnx"  # what the runtime scores with by default
SHIPPED_CHECKPOINT = ASSETS / "ictal-chb.pt"  # its torch checkpoint, for Grad-CAM, reports, re-export
DEMO_CLIP = ASSETS / "neo07_seizure.edf"  # Helsinki neonatal baby 7, a patient the shipped model never saw
