"""The embedded default: the moto-based emulator, its server, the demo data."""
