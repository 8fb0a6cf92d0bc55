"""Config: the example file documents every key and loads; bad files stop start-up with exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from node.config import SETTINGS, Config, load, render_example
from node.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_file_loads_and_documents_every_key():
    config = load(ROOT / "config.example.toml")
    assert isinstance(config, Config)
    text = (ROOT / "config.example.toml").read_text()
    assert text == render_example(), "config.example.toml is stale: run `nnode config-example > config.example.toml`"
    for setting in SETTINGS:
        assert f"\n{setting.path.split('.', 1)[1]} = " in text, setting.path


def test_config_is_frozen_and_typed(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "4 Elm St"\n[sync]\npeers = [{url = "http://10.1.2.3:8470", key = "' +
                    "a" * 64 + '"}]\n')
    config = load(path)
    assert config.node.name == "4 Elm St" and config.sync.peers[0].url == "http://10.1.2.3:8470"
    with pytest.raises(AttributeError):
        config.node.name = "x"


@pytest.mark.parametrize("text, message", [
    ("[node]\nnmae = 'x'\n", "node.nmae: unknown key (expected one of: node.name"),
    ("[nodes]\nname = 'x'\n", "nodes: unknown key"),
    ("[http]\nport = '8470'\n", "http.port: expected an integer, got '8470' (str)"),
    ("[http]\nport = 70000\n", "http.port: expected a number >= 1 and <= 65535"),
    ("[discovery]\nenabled = 1\n", "discovery.enabled: expected a boolean"),
    ("[log]\nlevel = 'loud'\n", "log.level: expected one of 'debug'"),
    ("[node]\nlatitude = '91.5'\nlongitude = '0'\n", "node.latitude: expected a decimal string"),
    ("[sync]\ntrusted_keys = ['abc']\n", "sync.trusted_keys: expected a list of node keys"),
    ("[sync]\npeers = [{url = 'ftp://x'}]\n", "sync.peers: expected a list of tables"),
    ("[http\n", "invalid TOML"),
])
def test_bad_config_names_file_key_and_expectation(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert message in str(caught.value)


def test_cli_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[sync]\nanti_entropy_interval = 'often'\n")
    result = subprocess.run([sys.executable, "-m", "node", "--config", str(path), "run"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (f"nnode: config error: {path}: sync.anti_entropy_interval: expected an integer, "
                        "got 'often' (str)")
