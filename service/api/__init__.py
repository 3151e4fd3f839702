"""HTTP transport: thin routes over the data plane, and their dependencies."""
