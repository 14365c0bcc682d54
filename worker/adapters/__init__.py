"""Adapters by registered name (the only way a job names the code it runs), and the bundled demo adapters."""
