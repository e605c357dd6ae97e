"""The experiments' figures, one module each, drawn from saved results only."""
