"""Errors a clinical EEG engineer can act on: each names the file, stream,
channel or field and says what was expected."""


class IctalError(Exception):
    """Base class of every error ictal raises on purpose."""


class EDFError(IctalError):
    """An EDF/EDF+ file is missing, truncated, not EDF, or inconsistent."""


class AnnotationError(IctalError):
    """A seizure annotation file does not parse or contradicts its recording."""


class ChannelMismatch(IctalError):
    """The channels on offer cannot be mapped onto the ones a model needs."""


class SpecError(IctalError):
    """A feature spec is malformed or does not match the data or model."""


class StreamError(IctalError):
    """An LSL stream cannot be found or does not match the model."""


class ModelError(IctalError):
    """A model file is missing, corrupt, or lacks ictal metadata."""


class SinkError(IctalError):
    """A log or output file cannot be opened, or is in use by another monitor."""


class DataError(IctalError):
    """Labelled data cannot serve what was asked: no seizures to train on, no window to score."""
