"""Command-line interface of nqs (installed as the `nqs_cli` package)."""
