"""Code every service shares: configuration, errors, logging, clients."""
