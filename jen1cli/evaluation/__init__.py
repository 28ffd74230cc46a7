"""Objective metrics of the paper's Table 2: FAD, KL of AudioSet labels, CLAP text-audio score."""

# The default networks the metrics look through (Hugging Face repo ids). Kept here, free of heavy
# imports, so the CLI can show them as option defaults without loading torch at start-up.
DEFAULT_CLAP = "laion/larger_clap_music"
DEFAULT_ENCODEC = "facebook/encodec_48khz"
DEFAULT_CLASSIFIER = "MIT/ast-finetuned-audioset-10-10-0.4593"
