"""Linecrew agent package."""
