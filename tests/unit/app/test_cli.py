"""The command line's face: a version, and for every subcommand a description and an example."""
from __future__ import annotations

import pytest

from ingestflow.app import cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "ingestflow 0.1.0"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_has_a_description_and_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    spec = cli.COMMANDS[command]
    assert spec.description.split()[0] in text and len(spec.description) > 40
    assert f"example:\n  {spec.example}" in text and f"ingestflow {command}" in spec.example
