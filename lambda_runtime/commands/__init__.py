"""The runtime's click commands, one module per command (registered by ``lambda_runtime.cli``)."""
