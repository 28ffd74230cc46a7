"""Networks: autoencoder, whitener, U-Net, text encoder and their shared layers (no I/O, no CLI)."""
