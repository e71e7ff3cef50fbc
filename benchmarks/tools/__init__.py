"""Harnesses: the quick suite, two commits side by side, a newcomer's clean-clone path."""
