"""Objective metrics of the paper's Table 2: FAD, KL of AudioSet labels, CLAP text-audio score."""
