"""ONNX Runtime scoring. The model file alone defines the preprocessing: its
metadata_props carry the feature spec, threshold and weights' SHA-256."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .edf import Recording, open_edf
from .errors import ModelError, SpecError
from .features import CWTransform, FeatureSpec
from .peers import ClassicalPeers
from .windows import condition_edf, condition_recording, window_samples

META_SPEC = "ictal.feature_spec"
META_THRESHOLD = "ictal.threshold"
META_WEIGHTS = "ictal.weights_sha256"
META_NAME = "ictal.model_name"
META_CHECKPOINT = "ictal.checkpoint"
META_PEERS = "ictal.classical_peers"  # line-length / band-power detectors fitted with the model
META_FLAT_GUARD = "ictal.flat_channel_guard"  # the graph's flat-channel limit, for explanations
# where the graph hands low-passed windows to its gamma-free regression, for the band-limited warnings
META_BAND_FALLBACK = "ictal.band_limited_fallback"
META_GRAPH = "ictal.graph_sha256"  # of the ONNX graph itself (nodes + weights), checked at every load
# Outputs after the logit of a model with a band-limited fallback: its full and gamma-free regressions'
# logits and the weight that blends them (logit = full + weight · (gamma_free − full)).
REGRESSION_OUTPUTS = ("logit_full", "logit_gamma_free", "band_limited_weight")
# a model with a channel veto: each derivation's score over the veto's floor (batch, channels) and
# their soft maximum (batch,), the veto's input (≥ 0: some derivation looks like seizure on its own)
CHANNEL_OUTPUTS = ("channel_margin", "channel_evidence")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def onnx_graph_sha256(model_bytes: bytes, where: str = "model") -> str:
    """SHA-256 of an ONNX file's serialized graph (ModelProto field 7: nodes and weights).

    The metadata lives in another field, so writing the hash into the metadata does not
    change it, and a changed weight does. Reads the protobuf wire format directly: the
    bedside runtime does not need the onnx package.
    """
    i = 0
    try:
        while i < len(model_bytes):
            key, i = _varint(model_bytes, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(model_bytes, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                n, i = _varint(model_bytes, i)
                if field == 7:
                    if i + n > len(model_bytes):
                        raise ValueError("truncated graph")
                    return hashlib.sha256(model_bytes[i:i + n]).hexdigest()
                i += n
            else:
                raise ValueError(f"wire type {wire}")
    except ValueError as e:
        raise ModelError(f"{where}: not a readable ONNX file ({e})") from None
    raise ModelError(f"{where}: no graph in this ONNX file")


class Scorer:
    """p(seizure) of EEG windows with one exported model and one ONNX Runtime session (CPU).

    The model file defines everything the scorer needs: its feature spec (channels, rate,
    wavelet, frequencies, normalisation), its threshold and the SHA-256 of its graph, which
    is checked here. Torch is not needed.

    Parameters
    ----------
    path : str | Path
        An ``.onnx`` file written by ``ictal export``.
    expected_sha256 : str | None
        If given, the SHA-256 the whole file must have.
    threads : int | None
        ONNX Runtime intra-op threads, and the threads in which `transform` computes a batch of
        windows (default: ONNX Runtime's own choice, and one per CPU core).
    max_batch : int
        Windows per ONNX call; larger inputs are split.

    Attributes
    ----------
    spec : FeatureSpec
        The model's feature spec.
    threshold : float
        The decision threshold chosen on validation data at training time.
    transform : CWTransform
        Conditioned µV window ``(n_channels, n_samples)`` → model input.
    peers : ClassicalPeers | None
        The line-length and band-power detectors fitted with the model.

    Examples
    --------
    >>> from ictal import SHIPPED_MODEL
    >>> scorer = Scorer(SHIPPED_MODEL)  # doctest: +SKIP
    >>> scorer.predict_proba(scorer.transform(window_uv))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, expected_sha256: str | None = None, threads: int | None = None,
                 max_batch: int = 64):  # > 1 + n_channels, so occlusion stays one call
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        if self.path.suffix.lower() in (".pt", ".pth"):
            raise ModelError(f"{self.path}: this is a torch checkpoint; scoring needs the exported .onnx model "
                             f"(`ictal export --model {self.path.name} -o MODEL.onnx`)")
        model_bytes = self.path.read_bytes()
        if expected_sha256 and hashlib.sha256(model_bytes).hexdigest() != expected_sha256:
            raise ModelError(f"{self.path}: SHA-256 differs from the expected {expected_sha256[:12]}…")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.enable_cpu_mem_arena = False  # the arena would keep the occlusion batch's peak for good
        try:
            # CPU only, explicitly: never fall back silently to another device
            self.session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_SPEC not in meta:
            raise ModelError(f"{self.path}: no '{META_SPEC}' in metadata_props; export it with `ictal export`")
        self.spec = FeatureSpec.from_json(meta[META_SPEC], where=f"{self.path} metadata")
        if self.spec.norm_mean is None:
            raise SpecError(f"{self.path}: feature spec has no normalisation constants")
        self.threshold = _threshold(meta.get(META_THRESHOLD), self.path)
        stored = meta.get(META_GRAPH, "")
        if not stored:
            raise ModelError(f"{self.path}: no '{META_GRAPH}' in metadata_props, so its weights cannot be "
                             "verified; re-export it with `ictal export` (or `ictal.export.stamp_graph_hash`)")
        if onnx_graph_sha256(model_bytes, str(self.path)) != stored:
            raise ModelError(f"{self.path}: the graph's SHA-256 does not match '{META_GRAPH}' in its metadata; "
                             "the weights were changed or corrupted after export. Refusing to score with it")
        self.name = meta.get(META_NAME, self.path.stem)
        self.weights_sha256 = meta.get(META_WEIGHTS, "")
        self.checkpoint = meta.get(META_CHECKPOINT, "")
        self.metadata = dict(meta)
        try:
            self.peers = ClassicalPeers.from_dict(json.loads(meta.get(META_PEERS, "null")), where=str(self.path))
        except json.JSONDecodeError as e:
            raise ModelError(f"{self.path}: metadata '{META_PEERS}' is not valid JSON ({e})") from e
        self.flat_channel_guard = _flat_channel_guard(meta, self.path)
        self.band_limited_fallback = _band_limited_fallback(meta, self.path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        outputs = [o.name for o in self.session.get_outputs()]
        self.logit_output = outputs[0]
        # exported before the regressions were outputs: occlusion then sees the blended logit only
        self.has_regression_outputs = set(REGRESSION_OUTPUTS) <= set(outputs)
        self.has_channel_outputs = set(CHANNEL_OUTPUTS) <= set(outputs)
        want = list(self.spec.input_shape)
        if [d for d in inp.shape[1:]] != want:
            raise ModelError(f"{self.path}: model input {inp.shape} does not match the spec's (batch, {want})")
        self.max_batch = max_batch
        self.transform = CWTransform(self.spec, threads=threads or os.cpu_count() or 1)

    def _run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float32)  # no copy when already float32
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != self.spec.input_shape:
            raise SpecError(f"input windows have shape {x.shape[1:]}, the model expects {self.spec.input_shape}")
        if not np.all(np.isfinite(x)):
            raise SpecError("input contains NaN/inf; refusing to score")
        runs = [self.session.run(outputs, {self.input_name: np.ascontiguousarray(x[i:i + self.max_batch])})
                for i in range(0, len(x), self.max_batch)]
        if not runs:
            return [np.zeros(0, np.float32) for _ in outputs]
        return [np.concatenate([r[k].reshape(-1) for r in runs]) for k in range(len(outputs))]

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, [self.logit_output])[0]

    def predict_regressions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(full logit, gamma-free logit, band-limited weight) per window, for a model exported with
        `REGRESSION_OUTPUTS` (`has_regression_outputs`)."""
        if not self.has_regression_outputs:
            raise ModelError(f"{self.path}: the graph has no {', '.join(REGRESSION_OUTPUTS)} outputs; "
                             "re-export it with `ictal export`")
        full, gamma_free, weight = self._run(x, list(REGRESSION_OUTPUTS))
        return full, gamma_free, weight

    def predict_channel_evidence(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(per-derivation margins over the channel veto's floor (n, channels), pooled evidence (n,)),
        or None for a graph without `CHANNEL_OUTPUTS` (no veto, or exported before it)."""
        if not self.has_channel_outputs:
            return None
        margins, evidence = self._run(x, list(CHANNEL_OUTPUTS))
        return margins.reshape(len(evidence), -1), evidence

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.predict_logits(x).astype(np.float64)))

    def predict_log_power(self, x_log_power: np.ndarray) -> np.ndarray:
        """Score un-normalised log10 power (as models.data builds it)."""
        return self.predict_proba(self.spec.normalise(x_log_power))

    def predict_log_power_and_evidence(self, x_log_power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p, the channel veto's pooled evidence) of un-normalised log10 power in one pass of the
        graph; the evidence is NaN for a graph without `CHANNEL_OUTPUTS`."""
        x = self.spec.normalise(x_log_power)
        if not self.has_channel_outputs:
            p = self.predict_proba(x)
            return p, np.full(len(p), np.nan)
        logit, evidence = self._run(x, [self.logit_output, CHANNEL_OUTPUTS[1]])
        return 1.0 / (1.0 + np.exp(-logit.astype(np.float64))), evidence

    def score_samples(self, window_uv: np.ndarray) -> float:
        """p(seizure) of one conditioned window. window_uv : (n_channels, n_samples)."""
        return float(self.predict_proba(self.transform(window_uv))[0])

    def describe(self) -> str:
        s = self.spec
        return (f"model {self.name} ({self.path.name}): {len(s.channels)} channels at {s.sfreq_hz:g} Hz, "
                f"{s.window_s:g}-s windows, {len(s.freqs_hz)} freqs, threshold {self.threshold:.3f}")


@dataclasses.dataclass
class RecordingScores:
    """p(seizure) of every window of one recording (see `score_edf`)."""

    start_s: np.ndarray  # window starts, s from the recording's start
    end_s: np.ndarray
    p: np.ndarray
    threshold: float  # the model's
    zero_filled: list[str]  # model channels the recording lacked

    @property
    def above_threshold(self) -> np.ndarray:
        return self.p >= self.threshold


def score_edf(model: str | Path | Scorer, edf: str | os.PathLike | Recording, *, hop_s: float = 1.0,
              allow_missing: int = 0, batch: int = 32) -> RecordingScores:
    """Score every window of an EDF recording, offline, as the monitor would live.

    The recording is conditioned as a whole (montage, resampling, causal filters; a file is read
    a minute at a time) with the same code as the monitor and training, then cut into the
    model's windows.

    Parameters
    ----------
    model : str | Path | Scorer
        An exported ``.onnx`` model, or a `Scorer` already loaded.
    edf : str | os.PathLike | Recording
        An EDF/EDF+ file, or a recording read with `read_edf`.
    hop_s : float
        Seconds between window starts.
    allow_missing : int
        Model channels the recording may lack; they are zero-filled and listed in the result.
    batch : int
        Windows transformed and scored together (bounds memory).

    Returns
    -------
    scores : RecordingScores
        ``start_s``, ``end_s`` and ``p`` per window, the model's ``threshold`` and ``zero_filled``.
    """
    if hop_s <= 0:
        raise ValueError(f"hop_s must be positive, got {hop_s}")
    scorer = model if isinstance(model, Scorer) else Scorer(model)
    spec = scorer.spec
    zero_filled: list[str] = []
    how = dict(allow_missing=allow_missing, model_name=f"model {scorer.name}", zero_filled=zero_filled)
    data = (condition_recording(edf, spec, **how) if isinstance(edf, Recording)
            else condition_edf(open_edf(edf), spec, **how))  # a file is read a block at a time
    duration_s = data.shape[1] / spec.sfreq_hz
    starts = np.arange(0.0, duration_s - spec.window_s + 1e-9, hop_s)
    p = np.empty(len(starts))
    for i in range(0, len(starts), batch):
        segs = np.stack([window_samples(data, spec, s) for s in starts[i:i + batch]])
        p[i:i + len(segs)] = scorer.predict_log_power(scorer.transform.log_power_batch(segs))
    return RecordingScores(starts, starts + spec.window_s, p, scorer.threshold, zero_filled)


def _threshold(text: str | None, where) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: metadata '{META_THRESHOLD}' is {text!r}; expected a probability in (0, 1)") from None
    if not 0.0 < value < 1.0:  # NaN fails too: a monitor with it would never alert
        raise ModelError(f"{where}: metadata '{META_THRESHOLD}' is {text!r}; expected a probability in (0, 1)")
    return value


def _limit_and_ramp(meta: dict, key: str, where, valid, expected: str) -> dict | None:
    """{'limit_log10', 'ramp_log10'} of metadata `key` (decades), checked by valid(limit, ramp);
    None for a model exported without the field (or with null)."""
    text = meta.get(key)
    if text is None or text == "null":
        return None
    try:
        fields = json.loads(text)
        limit, ramp = float(fields["limit_log10"]), float(fields["ramp_log10"])
    except (json.JSONDecodeError, TypeError, KeyError, ValueError):
        limit = ramp = float("nan")  # refused below, with the text as it is
    if not valid(limit, ramp):
        raise ModelError(f"{where}: metadata '{key}' is {text!r}; expected null or {expected}")
    return {"limit_log10": limit, "ramp_log10": ramp}


def _flat_channel_guard(meta: dict, where) -> dict | None:
    """The graph's flat-channel guard; None without one."""
    return _limit_and_ramp(meta, META_FLAT_GUARD, where, lambda limit, ramp: limit > 0 and ramp >= 0,
                           '{"limit_log10": decades > 0, "ramp_log10": decades ≥ 0}')


def _band_limited_fallback(meta: dict, where) -> dict | None:
    """Where the graph hands low-passed windows to its gamma-free regression; None without one."""
    return _limit_and_ramp(meta, META_BAND_FALLBACK, where, lambda limit, ramp: limit < 0 and ramp > 0,
                           '{"limit_log10": decades < 0, "ramp_log10": decades > 0}')


def metadata_json(spec: FeatureSpec, threshold: float, weights_sha256: str, name: str, checkpoint: str,
                  peers: dict | None = None, flat_channel_guard: dict | None = None,
                  band_limited_fallback: dict | None = None) -> dict:
    return {META_SPEC: spec.to_json(), META_THRESHOLD: repr(float(threshold)), META_WEIGHTS: weights_sha256,
            META_NAME: name, META_CHECKPOINT: checkpoint, META_PEERS: json.dumps(peers),
            META_FLAT_GUARD: json.dumps(flat_channel_guard), META_BAND_FALLBACK: json.dumps(band_limited_fallback),
            "ictal.metadata_version": json.dumps(1)}


def seizure_like_channels(scorer, feats: np.ndarray, labels: list[str]) -> dict:
    """One window's channel-veto reading, for an explanation: `channel_evidence` (the veto's input,
    ≥ 0 where some derivation looks like seizure on its own), `channel_margin` per derivation, and
    `seizure_like_channels`, the derivations at or over the floor, most seizure-like first. {} for a
    model without a veto. scorer: a `Scorer` or anything with its `predict_channel_evidence`."""
    got = scorer.predict_channel_evidence(feats)
    if got is None:
        return {}
    margins, evidence = got
    margin = np.asarray(margins[0], float)
    return {"channel_evidence": round(float(evidence[0]), 4),
            "channel_margin": {labels[c]: round(float(margin[c]), 4) for c in range(len(labels))},
            "seizure_like_channels": [labels[c] for c in np.argsort(-margin, kind="stable") if margin[c] >= 0]}
