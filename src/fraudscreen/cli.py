"""The ``fraudscreen`` command line.

Each command is a thin wrapper: parse options, call one module, turn known errors
into a clear message and an exit code (0 ran, 1 a rule or check failed, 2 unusable
input or rules). Tracebacks are for bugs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fraudscreen import __version__

app = typer.Typer(
    name="fraudscreen",
    help=(
        "医保基金欺诈骗保疑点筛查 — screen medical-insurance claims for fund fraud.\n\n"
        "Typical session:\n\n"
        "  fraudscreen sample --out demo/data          # make a synthetic prefecture\n\n"
        "  fraudscreen validate --data demo/data --out demo/check\n\n"
        "  fraudscreen run --data demo/data --out demo/out\n\n"
        "  fraudscreen rules list                      # what the built-in rules catch"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fraudscreen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """医保基金欺诈骗保疑点筛查."""


DataOpt = Annotated[
    Path,
    typer.Option("--data", help="Data folder: NAME.parquet, NAME.csv or NAME/ parts per table."),
]
EncodingOpt = Annotated[
    Optional[str],
    typer.Option("--encoding", help="CSV encoding (utf-8, gb18030, gbk). Detected when omitted."),
]
ColumnMapOpt = Annotated[
    Optional[Path],
    typer.Option("--column-map", help="YAML file: column_map: {源列名: contract_name}."),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Fail (exit 1) when any row is quarantined.")
]


@app.command()
def validate(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for quarantine.csv.")],
    encoding: EncodingOpt = None,
    column_map: ColumnMapOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Read a data folder as `run` would, report what was quarantined, and stop.

    Writes OUT/quarantine.csv (table,file,line,column,value,reason; UTF-8 with BOM
    so Excel shows Chinese). Exit 0 when the data could be read, 1 under --strict
    when any row was quarantined, 2 when the input is unusable.
    """
    from fraudscreen.ingest import IngestError, load_folder, write_quarantine, print_summary

    try:
        ingestion = load_folder(data, encoding=encoding, column_map=column_map)
    except IngestError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    write_quarantine(ingestion, out)
    print_summary(ingestion)
    if strict and ingestion.quarantine.height:
        typer.echo(
            f"--strict: {ingestion.quarantine.height} row(s) quarantined; see {out / 'quarantine.csv'}",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def sample(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the data tables into.")],
    scale: Annotated[
        float, typer.Option("--scale", help="1 ≈ one million fee lines; 0.01 for a quick look.")
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 7,
    truth: Annotated[
        Optional[Path],
        typer.Option("--truth", help="Where to write the injected cases (default OUT/../truth)."),
    ] = None,
) -> None:
    """Generate a synthetic prefecture with injected fraud cases and decoys."""
    from fraudscreen.sample import generate

    generate(out, scale=scale, seed=seed, truth_dir=truth)


if __name__ == "__main__":  # pragma: no cover
    app()
