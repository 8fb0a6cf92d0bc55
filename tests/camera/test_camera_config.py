"""[[cameras.devices]] tables: valid ones load with defaults, every mistake names the file, the table and the key."""

import pytest

from node.config import load
from node.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_cameras_load_with_defaults_and_the_node_location(tmp_path):
    path = write(tmp_path, '''
[node]
latitude = "40.7128"
longitude = "-74.0060"
[[cameras.devices]]
id = "lobby"
url = "rtsp://viewer:secret@10.0.0.20/stream1"
privacy_masks = [[[0.7, 0], [1, 0], [1, 0.4]]]
[cameras.devices.motion]
threshold = 30
zones = {door = [[0, 0], [0.5, 0], [0.5, 1]]}
[[cameras.devices]]
id = "gate"
url = "http://10.0.0.21/video.mjpg"
viewers = ["resident"]
latitude = "40.7130"
longitude = "-74.0050"
''')
    lobby, gate = load(path).cameras.devices
    assert (lobby.id, lobby.retention_days, lobby.pre_capture, lobby.viewers) == ("lobby", 7, 5.0, ("manager",))
    assert lobby.motion.threshold == 30 and lobby.motion.zones[0][0] == "door"
    assert (lobby.latitude, lobby.longitude) == ("40.7128", "-74.0060")
    assert gate.viewers == ("manager", "resident") and gate.latitude == "40.7130"
    assert "secret" not in str(lobby.public())


@pytest.mark.parametrize("table, message", [
    ('id = "Lobby"\nurl = "rtsp://x/y"', "cameras.devices[0].id: expected 1-32 characters"),
    ('url = "rtsp://x/y"', "cameras.devices[0]: missing required key 'id'"),
    ('id = "upload"\nurl = "rtsp://x/y"', "cameras.devices[0].id: 'upload' is reserved"),
    ('id = "a"\nurl = "ftp://x/y"', "cameras.devices[0] (a).url: expected rtsp://"),
    ('id = "a"\nurl = "rtsp://x/y"\npre_capture = 500', "(a).pre_capture: expected a number >= 0 and <= 120"),
    ('id = "a"\nurl = "rtsp://x/y"\nretention = 3', "(a).retention: unknown key"),
    ('id = "a"\nurl = "rtsp://x/y"\nviewers = ["police"]', "(a).viewers: expected a list of 'manager'"),
    ('id = "a"\nurl = "rtsp://x/y"\ntransport = "http"', "(a).transport: expected one of 'tcp', 'udp'"),
    ('id = "a"\nurl = "rtsp://x/y"\nprivacy_masks = [[[0, 0], [1, 1]]]', "(a).privacy_masks: privacy mask 1: a "
     "polygon needs at least 3 points"),
    ('id = "a"\nurl = "rtsp://x/y"\n[cameras.devices.motion]\nthreshold = 999', "(a).motion.threshold: expected a number "
     ">= 1 and <= 254, got 999"),
    ('id = "a"\nurl = "rtsp://x/y"\n[cameras.devices.motion]\nblur = 4', "(a).motion: motion.blur must be odd"),
    ('id = "a"\nurl = "rtsp://x/y"\n[cameras.devices.motion]\nsensitivity = 3', "(a).motion.sensitivity: unknown"),
    ('id = "a"\nurl = "rtsp://x/y"\nlatitude = "91"\nlongitude = "0"', "(a).latitude: expected a decimal string"),
])
def test_camera_mistakes_name_file_table_and_key(tmp_path, table, message):
    path = write(tmp_path, "[[cameras.devices]]\n" + table + "\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path) + ": cameras.devices[0]")
    assert message in str(caught.value)


def test_duplicate_camera_ids_are_refused(tmp_path):
    path = write(tmp_path, '[[cameras.devices]]\nid = "a"\nurl = "sim:"\n[[cameras.devices]]\nid = "a"\nurl = "sim:"\n')
    with pytest.raises(ConfigError, match=r"cameras.devices\[1\].id: camera 'a' is defined twice"):
        load(path)


def test_a_detect_stream_is_checked_like_the_main_one() -> None:
    """`detect_url` names the camera's substream for motion; a URL of no known kind is refused, naming the key."""
    from node.camera.settings import parse_camera
    config = parse_camera("config.toml: cameras.devices[0]", {"id": "porch", "url": "rtsp://10.0.0.5/main",
                                                              "detect_url": "rtsp://10.0.0.5/sub"})
    assert config.detect_url == "rtsp://10.0.0.5/sub" and config.hardware_decoder
    assert "detect_url" not in config.public()  # it may hold a password, like the url
    with pytest.raises(ConfigError, match=r"cameras.devices\[0\].*detect_url: expected empty, or a second stream"):
        parse_camera("config.toml: cameras.devices[0]", {"id": "porch", "url": "rtsp://10.0.0.5/main",
                                                         "detect_url": "ftp://10.0.0.5/sub"})
