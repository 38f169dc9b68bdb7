"""Packaged data: the demo grid and the app icon, read through importlib.resources."""
