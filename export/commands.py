"""`ictal export`."""
from __future__ import annotations

import json

import numpy as np
import onnx

from .onnx_export import compare_int8, export_onnx, parity_check, quantize_int8


def parity_windows(onnx_path, data_dir) -> np.ndarray:
    """Normalised feature windows of real recordings, for parity and calibration."""
    from ictal.models.data import build_windows
    from ictal.runtime.scorer import Scorer

    s = Scorer(onnx_path)
    ws = build_windows(data_dir, s.spec, hop_s=5.0, seizure_hop_s=5.0)
    return s.spec.normalise(ws.x)


def export_main(a) -> int:
    out = export_onnx(a.model, a.output)
    graph = {e.key: e.value for e in onnx.load(str(out), load_external_data=False).metadata_props}["ictal.graph"]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB; {graph}); onnx.checker passed")
    if a.parity_data:
        x = parity_windows(out, a.parity_data)
        res = parity_check(a.model, out, x)
        print(f"parity on {res['n_windows']} real windows: max |Δlogit| {res['max_abs_logit_diff']:.2e}, "
              f"max |Δp| {res['max_abs_prob_diff']:.2e}")
        if a.int8:
            if not graph.startswith("whole network"):
                print("int8: this graph has no convolution, and int8 quantises only convolutions: the int8 file "
                      "scores like the fp32 one")
            q = quantize_int8(out, a.int8, x)
            cmp = compare_int8(out, q, x)
            print(json.dumps(cmp, indent=2))
    return 0
