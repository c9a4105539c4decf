"""Channel labels, montages and scalp regions.

Labels are matched case-insensitively after normalisation (TUH 'EEG FP1-REF'
→ 'FP1', PhysioNet 'Fp1.' → 'FP1', old 10-20 names T3/T4/T5/T6 → T7/T8/P7/P8).
Bipolar derivations a model needs ('FP1-F7') are taken from the stream when
present, or derived from referential electrodes (FP1 − F7), or from the
reversed derivation ('P7-T7' = −'T7-P7').
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from .errors import ChannelMismatch

OLD_TO_NEW = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
# Reference suffixes that make a channel referential: 'FP1-REF', 'F7-CS2', 'C3-LE', and an ear or
# mastoid, one or linked: 'FP1-A1', 'C4-M2', 'O1-A1+A2'.
REFERENCE_NAMES = {"REF", "LE", "AR", "AVG", "CS2", "A1A2", "M1M2", "A1", "A2", "M1", "M2", "A1+A2", "M1+M2"}

REGIONS = ("frontal", "central", "parietal-occipital", "left temporal", "right temporal")

# Zero-filling more than this share of a model's channels leaves scores that mean little. Measured
# on the shipped model (2026-12-06; healthy eegmmidb runs and seizure clips, random derivations
# zero-filled): with 4 of its 18 zero-filled it still found 64 % of the seizure windows it found
# intact; with 9 (half) its flat-channel guard, whose reference is the median channel, read every
# healthy window as a seizure.
ZERO_FILL_MAX_FRACTION = 0.25


def zero_fill_limit(n_channels: int) -> int:
    """How many of a model's `n_channels` may be zero-filled (missing or flat) before scores mean little."""
    return int(n_channels * ZERO_FILL_MAX_FRACTION)


# Derivations a window may have flat or saturated (zero-filled before scoring) and still be scored;
# with more, or with these and the missing ones past a quarter, it is rejected as the EEG of a
# failing electrode or headbox, not scored: with half its derivations flat (one hemisphere and the
# midline), the shipped model read every window of healthy EEG as a seizure.
MAX_BAD_CHANNELS = 2
# A channel is flat below this peak-to-peak, saturated when over SATURATED_SHARE of its samples reach this
FLAT_UV, SATURATION_UV, SATURATED_SHARE = 0.5, 3000.0, 0.01


def flat_blocks(x: np.ndarray, flat_uv: float, block: int) -> np.ndarray:
    """Peak-to-peak below `flat_uv` in each complete block of `block` samples (a remainder is left
    out). x : (..., n_channels, n_times) → (..., n_channels, n_times // block) bool."""
    x = np.asarray(x)
    k = x.shape[-1] // block
    return np.ptp(x[..., :k * block].reshape(*x.shape[:-1], k, block), axis=-1) < flat_uv


def saturated_fraction_blocks(x: np.ndarray, saturation_uv: float, block: int) -> np.ndarray:
    """Share of samples at or beyond ±`saturation_uv` in each complete block of `block` samples.
    x : (..., n_channels, n_times) → (..., n_channels, n_times // block) float32."""
    x = np.asarray(x)
    k = x.shape[-1] // block
    return np.mean(np.abs(x[..., :k * block].reshape(*x.shape[:-1], k, block)) >= saturation_uv,
                   axis=-1).astype(np.float32)


def flat_channels(x: np.ndarray, flat_uv: float, block: int | None = None) -> np.ndarray:
    """Which channels are flat: peak-to-peak below `flat_uv` over the window or, with `block`
    samples, over any of its consecutive blocks (an electrode that comes off during the window
    leaves a flat stretch beside its EEG, and the window's EEG is no longer the head's).
    x : (..., n_channels, n_times) → (..., n_channels) bool."""
    x = np.asarray(x)
    n = x.shape[-1]
    if not block or block >= n:
        return np.ptp(x, axis=-1) < flat_uv
    flat = flat_blocks(x, flat_uv, block).any(axis=-1)
    if n % block:  # the remainder, in a block that ends with the window
        flat |= np.ptp(x[..., n - block:], axis=-1) < flat_uv
    return flat


def window_rejection(n_bad: int, n_missing: int, n_channels: int, *, max_bad: int = MAX_BAD_CHANNELS,
                     force: bool = False) -> str | None:
    """Why a window with `n_bad` flat or saturated channels, besides `n_missing` zero-filled ones,
    cannot be scored; None when it can. The monitor's rule, and `ictal evaluate`'s."""
    if n_bad > max_bad:
        return "flat or saturated channels"
    if n_bad + n_missing > zero_fill_limit(n_channels) and not force:
        return "flat or saturated channels besides the missing ones"
    return None


def check_zero_fill(allow_missing: int, n_channels: int, *, force: bool = False, model_name: str = "model") -> None:
    """Refuse `--allow-missing` beyond `zero_fill_limit` unless `force`, with the way out."""
    limit = zero_fill_limit(n_channels)
    if allow_missing > limit and not force:
        raise ChannelMismatch(f"--allow-missing {allow_missing} would zero-fill more than a quarter of {model_name}'s "
                              f"{n_channels} channels ({limit}): its scores and explanations on such EEG mean "
                              f"little. Pass --force to go on anyway.")


_LEFT_TEMPORAL = {"F7", "T7", "P7", "FT7", "FT9", "T9", "TP7", "TP9", "A1", "M1"}
_RIGHT_TEMPORAL = {"F8", "T8", "P8", "FT8", "FT10", "T10", "TP8", "TP10", "A2", "M2"}


def _clean_electrode(name: str) -> str:
    name = name.strip().upper().replace(".", "").replace(" ", "")
    return OLD_TO_NEW.get(name, name)


def split_reference(label: str) -> tuple[str, str]:
    """(canonical label, reference) of a channel label: 'EEG Fp1-A1' → ('FP1', 'A1'),
    'EEG T3-REF' → ('T7', 'REF'), 'Fp1.' → ('FP1', ''), 'fp1-f7' → ('FP1-F7', '').
    Exporters' other spellings of a signal type and a reference read the same: 'POL Fp1',
    'EEG:Fp1', 'EEG-Fp1' → 'FP1'; 'Fp1_REF', 'Fp1 (REF)' → ('FP1', 'REF')."""
    s = label.strip().upper()
    s = re.sub(r"^(?:(EEG|EOG|ECG|EMG|POL)(\s+|\s*[:_]\s*)|EEG-(?=[A-Z]))", "", s)
    s = re.sub(r"\s*\(\s*([A-Z0-9+]+)\s*\)$|_([A-Z0-9+]+)$", lambda m: "-" + (m.group(1) or m.group(2)), s)
    s = re.sub(r"-\d+$", "", s) if re.match(r"^[A-Z0-9]+-[A-Z0-9]+-\d+$", s) else s  # MNE 'T8-P8-0'
    parts = [p for p in s.split("-")]
    reference = parts[1].replace(".", "").strip() if len(parts) == 2 else ""
    if reference in REFERENCE_NAMES:
        return _clean_electrode(parts[0]), reference
    return "-".join(_clean_electrode(p) for p in parts), ""


def normalise_label(label: str) -> str:
    """Canonical form of a channel label: 'EEG Fp1-REF' → 'FP1', 'fp1-f7' → 'FP1-F7'."""
    return split_reference(label)[0]


def unique_labels(labels: list[str]) -> list[str]:
    """Labels made unique for display and JSON keys: CHB-MIT's second 'T8-P8' → 'T8-P8 (2)'."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


_SCALP_ELECTRODE = re.compile(r"^(FP|AF|FT|FC|F|TP|T|CP|C|PO|P|O|I|N|A|M)(Z|\d{1,2})$")


def names_scalp_electrodes(label: str) -> bool:
    """Whether a label names 10-20/10-10 electrodes, referential or bipolar ('EEG Fp1-REF',
    'T8-P8', 'C3..'): not 'EKG EKG', 'SPO2', 'HR', 'PHOTIC-REF' or a numbered input ('1')."""
    return all(_SCALP_ELECTRODE.match(part) for part in normalise_label(label).split("-"))


def is_dummy(label: str) -> bool:
    return label.strip() in ("", "-", ".")


def electrode_region(electrode: str) -> str | None:
    """Scalp region of one 10-20/10-10 electrode.

    Rule: temporal chain electrodes (F7/T7/P7 and FT/TP/T9/T10 neighbours)
    go to left/right temporal; names starting O or P (incl. PO) go to
    parietal-occipital; C and CP to central; FP, AF, F, FC to frontal.
    """
    e = _clean_electrode(electrode)
    if e in _LEFT_TEMPORAL:
        return "left temporal"
    if e in _RIGHT_TEMPORAL:
        return "right temporal"
    if e.startswith(("O", "P", "I")):
        return "parietal-occipital"
    if e.startswith(("C",)):
        return "central"
    if e.startswith(("FP", "AF", "F")):
        return "frontal"
    if e.startswith("T"):  # other temporal names: side by parity of the digit
        digits = re.findall(r"\d+", e)
        if digits:
            return "left temporal" if int(digits[0]) % 2 else "right temporal"
    return None


def channel_region(label: str) -> str:
    """Scalp region of a referential or bipolar channel.

    Bipolar rule: a derivation belongs to the region both electrodes share;
    if they differ and one is temporal, the temporal one wins (a temporal
    chain link like FP1-F7 or P7-O1 records the lateral chain); otherwise
    the region of the first (active) electrode. FT9-FT10 spans both
    temporal lobes and is assigned by its first electrode (left temporal).
    """
    parts = normalise_label(label).split("-")
    regions = [electrode_region(p) for p in parts]
    if any(r is None for r in regions):
        raise ChannelMismatch(f"channel {label!r}: electrode not on the 10-20/10-10 system; no scalp region")
    if len(regions) == 1 or regions[0] == regions[1]:
        return regions[0]
    temporal = [r for r in regions if r.endswith("temporal")]
    if len(temporal) == 1:
        return temporal[0]
    return regions[0]


def region_members(labels: list[str]) -> dict[str, list[int]]:
    """{region: [channel indices]} for the five regions, in REGIONS order."""
    members = {r: [] for r in REGIONS}
    for i, lab in enumerate(labels):
        members[channel_region(lab)].append(i)
    return members


@dataclasses.dataclass
class Montage:
    """A linear map from source channels to the channels a model needs.

    matrix : ndarray, shape (n_target, n_source); target = matrix @ source.
    """

    matrix: np.ndarray
    target: list[str]
    source: list[str]
    how: list[str]  # per target: 'direct', 'derived A-B', 'reversed', 'missing (zero-filled)'
    missing: list[str]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """data : ndarray, shape (n_source, n_times) → (n_target, n_times)."""
        if self._is_selection:
            return data[self._index]
        return self.matrix @ data

    def __post_init__(self):
        nz = self.matrix != 0
        self._is_selection = bool(np.all(nz.sum(axis=1) == 1) and np.all(self.matrix[nz] == 1))
        self._index = np.argmax(nz, axis=1) if self._is_selection else None


def _shared_reference(first: dict[str, int], second: dict[str, int]) -> tuple[int, int] | None:
    """Source indices of two electrodes on one reference ({reference: index} each). A label that
    names no reference ('Fp1') pairs with any: its reference is the recording's, unstated."""
    for reference, i in first.items():
        if reference in second:
            return i, second[reference]
    if first and second and ("" in first or "" in second):
        return first.get("", next(iter(first.values()))), second.get("", next(iter(second.values())))
    return None


# An electrode that is the second electrode of this many labels is the recording's reference
# ('Fp1-Cz', 'F7-Cz', …): no bipolar montage repeats an electrode more than twice (O1, O2).
COMMON_ELECTRODE_REFERENCE_MIN = 6


def _add_common_electrode_reference(src: dict[str, dict[str, int]]) -> None:
    """Read 'FP1-CZ', 'F7-CZ', … (every electrode against one scalp electrode, here Cz) also as
    FP1 and F7 on reference CZ, so that FP1-F7 is derived like any other referential pair. The
    labels stay bipolar too: FZ-CZ is then direct and CZ-PZ the reversed PZ-CZ."""
    second: dict[str, list[str]] = {}
    for key, refs in src.items():
        parts = key.split("-")
        if len(parts) == 2 and "" in refs:
            second.setdefault(parts[1], []).append(parts[0])
    for reference, actives in second.items():
        if len(actives) >= COMMON_ELECTRODE_REFERENCE_MIN:  # distinct: src's keys are unique
            for active in actives:
                src.setdefault(active, {}).setdefault(reference, src[f"{active}-{reference}"][""])


def resolve_montage(source_labels: list[str], target_labels: list[str], *, allow_missing: int = 0,
                    source_name: str = "stream", model_name: str = "model") -> Montage:
    """Map `source_labels` (what a file/stream has) onto `target_labels` (what a model needs).

    A derivation is built from two referential electrodes only where both share a reference
    (FP1-A1 − F7-A1): across two named references (FP1-A1 − F7-A2) it would carry the difference
    of the references too, so that derivation is missing instead, and the error says why.
    """
    src: dict[str, dict[str, int]] = {}  # label → {reference: source index}
    for i, lab in enumerate(source_labels):
        if not is_dummy(lab):
            key, reference = split_reference(lab)
            src.setdefault(key, {}).setdefault(reference, i)  # first of duplicate labels wins
    _add_common_electrode_reference(src)
    m = np.zeros((len(target_labels), len(source_labels)), dtype=np.float64)
    how, missing, needed, unshared = [], [], [], []
    for t, lab in enumerate(target_labels):
        key = normalise_label(lab)
        parts = key.split("-")
        pair = _shared_reference(src.get(parts[0], {}), src.get(parts[-1], {})) if len(parts) == 2 else None
        if key in src:
            m[t, next(iter(src[key].values()))] = 1.0
            how.append("direct")
        elif pair:
            m[t, pair[0]] = 1.0
            m[t, pair[1]] = -1.0
            how.append(f"derived {parts[0]}-{parts[1]}")
        elif len(parts) == 2 and f"{parts[1]}-{parts[0]}" in src:
            m[t, next(iter(src[f"{parts[1]}-{parts[0]}"].values()))] = -1.0
            how.append("reversed")
        else:
            missing.append(lab)
            if len(parts) == 2 and all(p in src for p in parts):
                on = [f"{p} on {'/'.join(r or 'no reference' for r in src[p])}" for p in parts]
                unshared.append(f"{lab} ({', '.join(on)})")
            needed += [p for p in parts if p not in src and p not in needed]
            how.append("missing (zero-filled)")
    if len(missing) > allow_missing:
        lacks = f"lacks {', '.join(needed)} needed for " if needed else "cannot build "
        raise ChannelMismatch(
            f"{source_name} {lacks}{', '.join(missing)} ({model_name})"
            + (f"; no common reference for {'; '.join(unshared)}" if unshared else "")
            + f"; it has {', '.join(l for l in source_labels if not is_dummy(l)) or 'no channels'}. "
            + (f"Pass --allow-missing {len(missing)} to zero-fill them."
               if len(missing) <= zero_fill_limit(len(target_labels)) else
               f"That is more than a quarter of the {model_name}'s {len(target_labels)} channels: zero-filled, "
               f"the model's scores mean little; score this montage with a model trained on it "
               f"(--allow-missing {len(missing)} --force zero-fills them anyway)."))
    return Montage(m, list(target_labels), list(source_labels), how, missing)


def seizure_like_text(reading: dict, shown: int = 4) -> str:
    """'FP2-F8 (+1.93), P8-O2 (+0.40) and 3 more' from a `runtime.scorer.seizure_like_channels`
    reading: the derivations over the channel veto's floor with their margins ('' when none is)."""
    named, margin = reading.get("seizure_like_channels") or [], reading.get("channel_margin") or {}
    text = ", ".join(f"{c} ({margin[c]:+.2f})" for c in named[:shown])
    return text + (f" and {len(named) - shown} more" if len(named) > shown else "")
