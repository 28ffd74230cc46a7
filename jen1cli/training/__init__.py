"""``jen1 train``: trainer.py runs the stages in order, one module each (autoencoder.py,
whitening.py, diffusion.py) around loop.py (options, step loop, resume, export); their building
blocks are data, losses, the STFT discriminator, EMA, the LR schedule and checkpoints."""
