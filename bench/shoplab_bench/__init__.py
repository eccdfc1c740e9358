"""Shoplab's benchmark harness: run the load tools, sample CPU, guard routes, render the report."""
