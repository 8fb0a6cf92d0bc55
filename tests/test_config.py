"""Config: the example file documents every key and loads; bad files stop start-up with exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from node.config import Config, build, keys, load, render_example
from node.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_file_loads_and_documents_every_key():
    config = load(ROOT / "config.example.toml")
    assert isinstance(config, Config)
    text = (ROOT / "config.example.toml").read_text()
    assert text == render_example(), "config.example.toml is stale: run `nnode config-example > config.example.toml`"
    for key in keys():
        table, _, name = key.rpartition(".")
        assert f"\n[{table}]\n" in text and f"\n{name} = " in text.split(f"\n[{table}]\n", 1)[1], key


def test_config_is_frozen_and_typed(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "4 Elm St"\n[sync]\npeers = [{url = "http://10.1.2.3:8470", key = "' +
                    "a" * 64 + '"}]\n')
    config = load(path)
    assert config.node.name == "4 Elm St" and config.sync.peers[0].url == "http://10.1.2.3:8470"
    with pytest.raises(AttributeError):
        config.node.name = "x"


@pytest.mark.parametrize("text, message", [
    ("[node]\nnmae = 'x'\n", "node.nmae: unknown key (expected one of: name, data_dir"),
    ("[nodes]\nname = 'x'\n", "nodes: unknown key"),
    ("[http]\nport = '8470'\n", "http.port: expected an integer, got '8470' (str)"),
    ("[http]\nport = 70000\n", "http.port: expected a number >= 1 and <= 65535"),
    ("[discovery]\nenabled = 1\n", "discovery.enabled: expected a boolean"),
    ("[log]\nlevel = 'loud'\n", "log.level: expected one of 'debug'"),
    ("[node]\nlatitude = '91.5'\nlongitude = '0'\n", "node.latitude: expected a decimal string"),
    ("[sync]\ntrusted_keys = ['abc']\n", "sync.trusted_keys: expected a list of node keys"),
    ("[sync]\npeers = [{url = 'ftp://x'}]\n", "sync.peers: expected a list of tables"),
    ("[http\n", "invalid TOML"),
    ("[http]\nport = true\n", "http.port: expected an integer, got True (bool)"),
    ("[node]\ndata_dir = 3\n", "node.data_dir: expected a string"),
    ("[node]\nlatitude = '40.7'\n", "node.latitude: expected latitude and longitude both set or both empty"),
    ("[sync]\npeers = [{url = 'http://x', key = '" + "a" * 64 + "', name = 'x'}]\n", "sync.peers: expected a list"),
    ("[alerts]\nfeeds = ['https://a/x', 'https://a/x']\n", "alerts.feeds: expected a list of distinct"),
    ("[agencies]\nmax_area_sq_mi = '0'\n", "agencies.max_area_sq_mi: expected a positive decimal string"),
    ("source = 'x'\n", "source: unknown key"),
    ("[push]\nservices = ['fcm.googleapis.com/x']\n", "push.services[0]: expected a host name"),
    ("[push]\ncontact = 'admin@example.com'\n", "push.contact: expected a mailto: or https:// URL"),
])
def test_bad_config_names_file_key_and_expectation(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert message in str(caught.value)


def test_build_trusts_ranges_but_checks_the_rest():
    config = build({"http.port": 0, "sync.trusted_keys": ["b" * 64], "node.data_dir": "~/nn"})
    assert config.http.port == 0 and config.sync.trusted_keys == ("b" * 64,)
    assert config.node.data_dir == Path("~/nn").expanduser() and config.db_path.name == "node.db"
    assert config.replace(node={"name": "x"}).node.name == "x"
    with pytest.raises(ConfigError, match=r"^<defaults>: http.prot: unknown key"):
        build({"http.prot": 1})
    with pytest.raises(ConfigError, match=r"cameras.devices\[0\] \(a\).url: expected rtsp://"):
        build({"cameras.devices": [{"id": "a", "url": "ftp://x"}]})


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
