"""Sweet Slice kit."""
