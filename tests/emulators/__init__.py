"""Local stand-ins of the platforms' wire APIs, served on 127.0.0.1 (see harness.py)."""
