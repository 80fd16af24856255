"""The lowest layer: typed-config parsing and crash-safe, verifiable files. Knows nothing of the pipeline."""
