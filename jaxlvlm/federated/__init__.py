"""Federated learning across processes that share no data (the in-process runner stays in runners/)."""
