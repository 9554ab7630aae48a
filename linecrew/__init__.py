"""Linecrew linecrew package."""
