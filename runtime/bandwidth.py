"""Is a recording's top band attenuated, by a low-pass filter below the model's band?

The shipped summary regression reads less fast activity as more seizure-like "slowing". On
EEG low-passed by the recording system below the feature spec's upper edge (a clinical 35-Hz
filter, a 100-Hz system's anti-alias filter at 30 Hz), every window looks slower than the EEG
it was trained on. In a leave-one-patient-out screen of the shipped recipe's summary regression (its
30 folds and threshold rule), the held-out healthy adults' false alarms went from 141 to 315
per 24 h when their EEG was low-passed at 35 Hz (4th-order Butterworth, zero-phase) and to 412
at 30 Hz; the shipped model's healthy-adult windows above threshold went from 5 % to 13 % and
31 %. No recording of the shared data is filtered that way, so this module measures it, and
the monitor and `ictal evaluate` say so instead of scoring such EEG silently. Models trained
with the gamma-free fallback (the shipped one since its sixth build) run the same check per
window inside their graph (`check_rows` gives them these bands' CWT rows) and score such
windows with a regression that does not see the gamma band: 263 instead of 412 at 30 Hz.

The measure: per window, the median over channels of the mean log10 power in the spec's top
4 Hz minus that of the band 14 to 10 Hz below the top (37-40 against 26-30 Hz for the shipped
0.5-40 Hz spec). Per recording (median over its windows), the 112 shared recordings (256 and
160 Hz) lie from -0.68 (a baby's: neonatal EEG has little fast activity) to +0.17 decades, and
resampling to 100 Hz with a proper anti-alias filter moves windows by about 0.01. The same
recordings low-passed at 35 Hz lie from -1.04 to -0.61 (67 of 112 below the limit), at 30 Hz
from -1.28 to -0.90 (all below).
"""
from __future__ import annotations

import numpy as np

from .dsp import band_power_difference
from .features import contiguous_rows

# A recording whose median drop is below this is band-limited: 0.12 below the lowest unfiltered
# shared recording (a baby's; other babies may lie lower), above every 30-Hz low-passed one.
# Models trained with the gamma-free fallback switch to it per window around the same limit.
BAND_LIMITED_DECADES = -0.8
REFERENCE_BELOW_HZ = (10.0, 14.0)  # the reference band, in Hz below the spec's upper edge
TOP_WIDTH_HZ = 4.0


def _bands(spec) -> tuple[np.ndarray, np.ndarray]:
    """(top, reference) masks over the spec's frequencies: (edge - 4, edge] and [edge - 14, edge - 10]."""
    edge = spec.band_hz[1]
    f = np.asarray(spec.freqs_hz, float)
    top = (f > edge - TOP_WIDTH_HZ) & (f <= edge)
    reference = (f >= edge - REFERENCE_BELOW_HZ[1]) & (f <= edge - REFERENCE_BELOW_HZ[0])
    return top, reference


def check_rows(spec) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The (first, stop) CWT rows of the top and reference bands, for a model that runs this check
    itself per window; None where the spec's frequencies do not cover both as contiguous runs."""
    top, reference = (contiguous_rows(mask) for mask in _bands(spec))
    return (top, reference) if top and reference else None


def top_band_drop(log_power: np.ndarray, spec) -> np.ndarray:
    """Decades from the spec's reference band to its top band, per window (NaN where the spec's
    frequencies do not cover both bands).

    log_power : (n_windows, n_channels, n_freqs, n_columns) un-normalised log10 power → (n_windows,).
    """
    top, ref = _bands(spec)
    if not (top.any() and ref.any()):
        return np.full(len(log_power), np.nan)
    return np.median(band_power_difference(log_power, top, ref), axis=1)


def band_limited_message(drop: float, spec, fallback: bool = False) -> str:
    """What a median drop below `BAND_LIMITED_DECADES` means, for a warning; `fallback`: the model
    hands such windows to its gamma-free regression."""
    edge, f = spec.band_hz[1], np.asarray(spec.freqs_hz, float)
    top, reference = (f"{f[m].min():g}-{f[m].max():g} Hz" for m in _bands(spec))
    what = ("the model scores such windows with its gamma-free regression (check the recording's filter)" if fallback
            else "the model reads it as seizure-like slowing (healthy EEG low-passed at 35 Hz drew 2.2x the "
                 "false alarms)")
    return (f"its power at {top} is {-drop:.2f} decades below its power at {reference} (unfiltered EEG: about "
            f"0.37, at most 0.68): it looks low-passed below the model's {edge:g}-Hz band; {what}")
