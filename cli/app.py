"""The `nqs` Typer application."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """nqs: neural-network quantum states (VMC ground states and dynamics)."""


@app.command()
def info() -> None:
    """Versions of nqs and its numerical stack, and the devices JAX sees."""
    import nqs

    typer.echo(f"nqs {nqs.__version__}")


def main() -> None:
    app()
