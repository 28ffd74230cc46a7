"""The parts of ``examples/benchmark_speed.py``: one module per model, apart from timing and report.

- ``measure.py``: wall and CPU clocks, peak memory, FLOP counts, a stage's figures.
- ``settings.py``: what to run (from the command line), T5 encoder configs, text-encoder timing.
- ``jen1.py``, ``musicgen.py``, ``stable_audio.py``: each model built from its published
  configuration with random weights, and timed stage by stage.
- ``machine.py``: the machine's description and its measured matmul ceiling.
- ``report.py``: the ratios, the physical limit, the printed table and ``--merge``.

``examples/`` is not a package: ``benchmark_speed.py`` puts its own folder on ``sys.path`` and
imports this one as ``speedbench``.
"""
