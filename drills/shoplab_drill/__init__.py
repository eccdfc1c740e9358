"""The fault drills' harness: the load, the set checker, the analysis and the report (drills/README.md)."""
