"""End-to-end tests: a real worker process against the embedded broker."""
