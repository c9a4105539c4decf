"""ictal stream_sim: replay EDF and synthetic EEG as LSL streams (torch-free)."""
