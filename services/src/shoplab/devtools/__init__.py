"""Throwaway real servers on loopback, shared by the test suite and `make run-local` (one implementation)."""
