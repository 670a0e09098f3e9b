"""Reports: a run evaluated per segment, track and genre against its baselines, the figures, and the registry that
promotes a champion only over one of its own line.
"""
