"""A local stand-in for the Garnet API, for `make run` and the test suite."""
