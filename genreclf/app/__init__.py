"""The `genreclf` command and what only it needs: the CLI, its console, the demo, the doctor, and Prefect's set-up (the
temporary server, a running one).
"""
