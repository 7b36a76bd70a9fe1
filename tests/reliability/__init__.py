"""Reliability suite: crash, fault and hostile-input trials (fast ones under pytest, many-trial runs via __main__)."""
