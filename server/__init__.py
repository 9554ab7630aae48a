"""Linecrew server package."""
