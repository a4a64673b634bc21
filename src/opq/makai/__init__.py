"""OPQ Makai: authenticated ingest, measurements and trends, triggering, and waveform acquisition."""
