"""The key reference of docs/configuration.md is generated from the schema."""

from __future__ import annotations

from pathlib import Path

from dnaagent import config, configdoc, schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_configuration_md_is_up_to_date_with_the_code():
    text = DOC.read_text(encoding="utf-8")
    current = configdoc.generated_part(text)
    assert current is not None, f"{DOC} lacks the {configdoc.BEGIN} / {configdoc.END} markers"
    assert current.strip() == configdoc.tables().strip(), (
        "docs/configuration.md is out of date: run "
        "python -m dnaagent.configdoc --write docs/configuration.md"
    )


def test_every_key_of_every_section_has_a_row_with_its_option_and_default():
    body = configdoc.tables()
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    infos = list(config.keys())
    assert len(rows) == len(infos)
    for info, row in zip(infos, rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == f"`{info.name}`"
        assert cells[1] == f"`--{info.option}`"
        assert cells[4] == info.help.replace("|", "\\|")
    for section in {i.section for i in infos}:
        assert f"### `[{section}]`" in body


def test_every_check_in_the_schema_has_a_description():
    # A new check without an entry (or docstring) would show as a vague phrase.
    for info in config.keys():
        if info.check is not None:
            text = configdoc.describe_check(info.check)
            assert text and text != "checked when the agent starts", info.dotted


def test_checks_are_described_from_their_real_bounds():
    assert configdoc.describe_check(schema.between(0.5, 3600)) == "0.5 to 3600"
    assert configdoc.describe_check(schema.between(1, 86400.0)) == "1 to 86400"
    assert configdoc.describe_check(schema.one_of("udp", "icmp")) == "one of `udp`, `icmp`"
    assert configdoc.describe_check(schema.port).startswith("port, 0 to 65535")
    assert configdoc.describe_check(None) == ""

    def _undocumented(v):
        """Must be even."""
        return None if v % 2 == 0 else "odd"

    assert configdoc.describe_check(_undocumented) == "Must be even"


def test_the_defaults_shown_are_the_declared_ones():
    by_option = {}
    for row in configdoc.tables().splitlines():
        if row.startswith("| `"):
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            by_option[cells[1]] = cells[3]
    assert by_option["`--control-port`"] == "`4080`"
    assert by_option["`--schedule-enabled`"] == "`false`"
    assert by_option["`--overlay-seeds`"] == "`[]`"
    assert by_option["`--agentx-context`"] == '`""`'
    assert by_option["`--snmp-listen`"] == '`["127.0.0.1"]`'


def test_a_changed_default_makes_the_check_fail(tmp_path, monkeypatch):
    path = tmp_path / "configuration.md"
    path.write_text(f"# x\n\n{configdoc.BEGIN}\n{configdoc.END}\n", encoding="utf-8")
    assert configdoc.main(["--check", str(path)]) == 1
    assert configdoc.main(["--write", str(path)]) == 0
    assert configdoc.main(["--check", str(path)]) == 0
    assert path.read_text(encoding="utf-8").startswith("# x\n\n")

    infos = list(config.keys())
    changed = [
        config.KeyInfo(i.section, i.name, i.type, 4081, i.help, i.check)
        if i.dotted == "control.port"
        else i
        for i in infos
    ]
    monkeypatch.setattr(config, "keys", lambda: iter(changed))
    assert configdoc.main(["--check", str(path)]) == 1
    assert configdoc.main(["--write", str(path)]) == 0
    assert "| `4081` |" in path.read_text(encoding="utf-8")


def test_write_refuses_a_file_without_markers(tmp_path, capsys):
    path = tmp_path / "plain.md"
    path.write_text("# no markers\n", encoding="utf-8")
    assert configdoc.main(["--write", str(path)]) == 1
    assert "markers" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "# no markers\n"
    assert configdoc.main(["--check", str(tmp_path / "missing.md")]) == 2


def test_pipes_in_help_texts_do_not_break_the_table():
    info = config.KeyInfo("x", "mode", str, "a", "a|b choice", schema.one_of("a", "b"))
    row = configdoc.tables([info]).splitlines()[-1]
    assert row == '| `mode` | `--x-mode` | string: one of `a`, `b` | `"a"` | a\\|b choice |'
