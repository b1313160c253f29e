"""The kit's Consul client (shopkit.consul) against the FAKE Consul of tests/fakes."""
