"""Building blocks of ``jen1 train``: data, losses, STFT discriminator, EMA and LR schedule."""
