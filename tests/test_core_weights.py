"""`basicsr weights`: registry, resumable hash-checked downloads from a local HTTP server, and missing-file errors.

Every download here comes from a server on 127.0.0.1 started by the test; no test touches the internet.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from srode_plugins import cli, weights_cli
from srode_plugins.errors import DuplicateComponentError, MissingWeightsError
from srode_plugins.weights import (
    CORE_WEIGHTS,
    UnknownWeightsError,
    WeightsDownloadError,
    WeightsFile,
    WeightsRegistry,
    fetch_weights,
    resolve_weights,
    weights_registry,
)

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class FileServer:
    """Serves PAYLOAD at /tiny.pth; honours Range unless told not to; can drop the connection mid-file."""

    url: str
    drop_after: int | None = None  # bytes sent before closing the connection (once)
    honour_range: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            state.requests.append(dict(self.headers))
            start = 0
            range_header = self.headers.get("Range")
            if range_header and state.honour_range:
                start = int(range_header.removeprefix("bytes=").rstrip("-"))
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drop_after is not None:
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                state.drop_after = None
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/tiny.pth"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def tiny_entry(server: FileServer, sha256: str | None = PAYLOAD_SHA256, size_mib: float | None = None) -> WeightsFile:
    return WeightsFile(name="tiny", filename="tiny.pth", url=server.url, sha256=sha256, size_mib=size_mib)


# ---------------------------------------------------------------- downloads


def test_a_download_with_the_published_hash_lands_in_place_and_is_not_fetched_twice(server, tmp_path):
    fetched = fetch_weights(tiny_entry(server), tmp_path, progress=False)

    assert fetched.path == tmp_path / "tiny.pth" and fetched.path.read_bytes() == PAYLOAD
    assert fetched.downloaded and fetched.verified and fetched.sha256 == PAYLOAD_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pth"]
    again = fetch_weights(tiny_entry(server), tmp_path, progress=False)
    assert not again.downloaded and len(server.requests) == 1


def test_a_torch_hub_style_hash_prefix_is_enough_to_verify(server, tmp_path):
    fetched = fetch_weights(tiny_entry(server, sha256=PAYLOAD_SHA256[:8]), tmp_path, progress=False)
    assert fetched.verified and fetched.path.read_bytes() == PAYLOAD


def test_a_hash_mismatch_keeps_no_file_and_names_both_hashes(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(WeightsDownloadError) as error:
        fetch_weights(tiny_entry(server, sha256=wrong), tmp_path, progress=False)

    message = str(error.value)
    assert PAYLOAD_SHA256 in message and wrong in message and "deleted" in message and server.url in message
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_with_the_wrong_hash_is_reported_not_replaced(server, tmp_path):
    (tmp_path / "tiny.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsDownloadError, match=r"tiny.pth.*delete it and run `basicsr weights fetch tiny`"):
        fetch_weights(tiny_entry(server), tmp_path, progress=False)
    assert server.requests == []


def test_an_interrupted_download_keeps_the_part_file_and_resumes_with_a_range_request(server, tmp_path):
    server.drop_after = 100_000
    with pytest.raises(WeightsDownloadError) as error:
        fetch_weights(tiny_entry(server), tmp_path, progress=False)
    assert f"stopped at 100000 of {len(PAYLOAD)} bytes" in str(error.value)
    assert "basicsr weights fetch tiny` again to resume" in str(error.value)
    part = tmp_path / "tiny.pth.part"
    assert part.read_bytes() == PAYLOAD[:100_000] and not (tmp_path / "tiny.pth").exists()

    fetched = fetch_weights(tiny_entry(server), tmp_path, progress=False)

    assert server.requests[-1]["Range"] == "bytes=100000-"
    assert fetched.verified and fetched.path.read_bytes() == PAYLOAD and not part.exists()


def test_a_server_that_ignores_range_restarts_the_download_from_the_first_byte(server, tmp_path):
    server.honour_range = False
    (tmp_path / "tiny.pth.part").write_bytes(PAYLOAD[:5000])
    fetched = fetch_weights(tiny_entry(server), tmp_path, progress=False)
    assert fetched.path.read_bytes() == PAYLOAD and fetched.verified


def test_a_part_file_longer_than_the_remote_file_starts_over(server, tmp_path):
    (tmp_path / "tiny.pth.part").write_bytes(PAYLOAD + b"stale tail")
    fetched = fetch_weights(tiny_entry(server), tmp_path, progress=False)
    assert fetched.path.read_bytes() == PAYLOAD and "Range" not in server.requests[-1]


def test_a_size_that_disagrees_with_the_registry_stops_before_writing(server, tmp_path):
    with pytest.raises(WeightsDownloadError, match=r"serves 307200 bytes, but the registry says 0.5 MiB"):
        fetch_weights(tiny_entry(server, size_mib=0.5), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert fetch_weights(tiny_entry(server, size_mib=0.293), tmp_path, progress=False).verified  # 307200 B


def test_an_unreachable_url_names_it_and_the_manual_way(tmp_path):
    entry = WeightsFile(name="gone", filename="gone.pth", url="http://127.0.0.1:9/gone.pth", sha256=None)
    with pytest.raises(WeightsDownloadError, match=r"cannot reach http://127.0.0.1:9/gone.pth .*by hand"):
        fetch_weights(entry, tmp_path, progress=False, timeout=5)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def local_registry(server, monkeypatch) -> WeightsRegistry:
    registry = WeightsRegistry()
    registry.add(tiny_entry(server, sha256=None), "test")
    monkeypatch.setattr(weights_cli, "weights_registry", lambda: registry)
    return registry


def test_fetch_without_a_published_hash_prints_the_computed_one_and_warns(local_registry, tmp_path, capsys):
    assert cli.main(["weights", "fetch", "tiny", "--dir", str(tmp_path), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert f"tiny: downloaded: {tmp_path / 'tiny.pth'}" in out
    assert "warning: no published SHA-256" in err and PAYLOAD_SHA256 in err


def test_fetch_checks_every_name_before_downloading_anything(local_registry, tmp_path, capsys, server):
    assert cli.main(["weights", "fetch", "tiny", "tinyy", "--dir", str(tmp_path)]) == 2
    assert "no weights named 'tinyy'. Did you mean: tiny?" in capsys.readouterr().err
    assert server.requests == []


def test_path_prints_the_cached_file_or_the_fetch_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert cli.main(["weights", "path", "vgg19"]) == 2
    assert "download it with: basicsr weights fetch vgg19" in capsys.readouterr().err
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg19-dcbb9e9d.pth").write_bytes(b"x")
    assert cli.main(["weights", "path", "vgg19"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "vgg19-dcbb9e9d.pth")


def test_list_shows_every_core_entry_with_its_file_and_whether_it_is_present(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    assert cli.main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines if line and not line.startswith((" ", "torch", "Download"))}
    assert {entry.name for entry in CORE_WEIGHTS} <= set(rows)
    assert "alexnet-owt-7be5be79.pth" in rows["alexnet"] and " present " in rows["alexnet"]
    assert " missing " in rows["vgg19"] and "sha256 prefix" in rows["vgg19"]


# ---------------------------------------------------------------- registry and missing files


def test_torchvision_entries_carry_the_hash_prefix_of_their_file_name_and_the_download_url():
    for entry in CORE_WEIGHTS:
        assert entry.url == f"https://download.pytorch.org/models/{entry.filename}"
        assert entry.filename.endswith(f"-{entry.sha256}.pth") and entry.hash_check == "sha256 prefix"


def test_every_vgg_file_the_perceptual_loss_reads_is_registered():
    from srode_plugins.compat import VGG_WEIGHT_FILES

    registry = weights_registry()
    assert {name: registry.for_file(file).name for name, file in VGG_WEIGHT_FILES.items()} == {
        name: name for name in VGG_WEIGHT_FILES
    }


def test_two_entries_with_one_name_are_refused_naming_both_providers(server):
    registry = WeightsRegistry()
    registry.add(tiny_entry(server), "first-dist")
    with pytest.raises(DuplicateComponentError, match="'tiny' is declared by both first-dist and second-dist"):
        registry.add(tiny_entry(server), "second-dist")


def test_an_unknown_name_suggests_the_nearest_ones():
    with pytest.raises(UnknownWeightsError, match=r"no weights named 'vgg91'\. Did you mean: vgg19"):
        weights_registry().get("vgg91")


def test_a_missing_registered_file_names_the_fetch_command_and_downloads_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolve_weights tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(None, what="VGG loss", option_key="train.perceptual_opt.vgg_weights",
                        default_name="vgg19-dcbb9e9d.pth", disable_hint="remove train.perceptual_opt")
    message = str(error.value)
    assert message.endswith("Download it with: basicsr weights fetch vgg19")
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    with pytest.raises(MissingWeightsError, match=r"'/nowhere/vgg16.pth'.*`basicsr weights fetch vgg16` downloads"):
        resolve_weights("/nowhere/vgg16.pth", what="LPIPS", option_key="lpips.backbone_path",
                        default_name="vgg16-397923af.pth", disable_hint="turn LPIPS off")


def test_an_unregistered_file_keeps_the_plain_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(None, what="X", option_key="x.path", default_name="mine.pth", disable_hint="drop x")
    assert "basicsr weights fetch" not in str(error.value) and str(error.value).endswith("or drop x.")
