"""Keeping a store healthy: `verify` checks what its records point at, `gc` collects what nothing keeps."""
