"""Sweet Slice product."""
