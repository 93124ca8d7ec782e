"""The ``rag`` command: thin typer commands over the library.

Each command parses flags, builds :class:`~rag_app.config.Settings`, calls one
library function and prints. Heavy imports happen inside the commands so
``rag --help`` stays instant. A :class:`~rag_app.errors.RagError` becomes one
``Error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rag_app.errors import RagError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Chat with your own documents, offline: ingest a folder, ask, chat, evaluate, fine-tune.",
)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (default: ./rag.toml).")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: .rag/index).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what is loaded from where.")]


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, show_time=False, console=_console(stderr=True))],
        force=True,
    )


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def settings_from_flags(config: Path | None, verbose: bool = False, **overrides: Any) -> Any:
    """Build Settings from --config and flags; with --verbose, say where things come from."""
    from rag_app.config import describe_origin, load_settings

    settings = load_settings(config, **overrides)
    if verbose:
        for key, where in describe_origin(settings, config, **overrides).items():
            logging.getLogger("rag_app").info("%s: %s", key, where)
    return settings


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(help="Folder of documents (.txt .md .html .pdf .docx).")],
    index: IndexOpt = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Chunk size (characters or tokens, see --chunk-unit).")] = None,
    chunk_overlap: Annotated[Optional[int], typer.Option(help="Overlap between neighbouring chunks.")] = None,
    chunk_unit: Annotated[Optional[str], typer.Option(help="chars or tokens (of the embedding model).")] = None,
    glob: Annotated[Optional[list[str]], typer.Option(help="Only files matching this glob (repeatable).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start the index over.")] = False,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build or update the index of FOLDER (only new or changed files are embedded)."""
    _setup_logging(verbose)
    from ingest.pipeline import ingest_folder

    settings = settings_from_flags(
        config,
        verbose,
        index=index,
        ingest={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "chunk_unit": chunk_unit,
                "globs": tuple(glob) if glob else None},
    )
    report = ingest_folder(folder, settings, rebuild=rebuild, console=_console(stderr=True))
    _console().print(report.summary())


@app.command("index-info")
def index_info(
    index: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show what an index holds: documents, chunks, embedding model, size, last update."""
    _setup_logging(verbose)
    from rag_app.store import IndexStore

    settings = settings_from_flags(config, verbose, index=index)
    with IndexStore.open(settings.index) as store:
        info = store.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:16} {value}")


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except RagError as err:
        typer.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
