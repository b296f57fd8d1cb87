"""Benchmarks and test helpers, apart from the product: the drivers behind `stream-assist bench`, a synthetic
aiortc client, a server-process helper and the random-weight model writer. Product modules never import from here."""
