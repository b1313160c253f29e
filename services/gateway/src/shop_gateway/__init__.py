"""Sweet Slice gateway."""
