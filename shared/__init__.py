"""Code both the device agent and the central server import: protocol, storage helpers, crypto, sync."""
