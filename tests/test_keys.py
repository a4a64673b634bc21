"""Tests of CurveZMQ key pairs and certificate files, ending with a real CURVE handshake."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from opq.errors import ConfigError
from opq.protocol import KeyPair, generate_keypair, public_key_of, read_certificate, write_certificate

# The test vector of the CurveZMQ RFC (rfc.zeromq.org/spec/26) and zmq_curve(7): a client's key pair.
RFC_PUBLIC = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
RFC_SECRET = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"

CZMQ_SECRET_FILE = f"""\
#   ****  Generated on 2019-03-14 10:11:12 by CZMQ  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = "opqserver"
curve
    public-key = "{RFC_PUBLIC}"
    secret-key = "{RFC_SECRET}"
"""


def test_generated_pairs_are_z85_keys_that_belong_together() -> None:
    pair = generate_keypair()
    assert len(pair.public) == len(pair.secret or "") == 40
    assert public_key_of(pair.secret or "") == pair.public
    assert generate_keypair() != pair


def test_public_key_of_the_rfc_secret() -> None:
    assert public_key_of(RFC_SECRET) == RFC_PUBLIC


def test_the_secret_stays_out_of_repr() -> None:
    assert RFC_SECRET not in repr(KeyPair(RFC_PUBLIC, RFC_SECRET))


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    pair = generate_keypair()
    public_path, secret_path = write_certificate(tmp_path, "opqbox7", pair)
    assert (public_path, secret_path) == (tmp_path / "opqbox7.key", tmp_path / "opqbox7.key_secret")
    assert read_certificate(secret_path) == pair
    assert read_certificate(public_path) == KeyPair(public=pair.public, secret=None)
    assert pair.secret is not None
    assert pair.secret not in public_path.read_text()
    text = secret_path.read_text()
    assert "metadata\n" in text
    assert "curve\n" in text
    assert f'    public-key = "{pair.public}"\n' in text
    assert f'    secret-key = "{pair.secret}"\n' in text


def test_pyzmq_reads_our_files(tmp_path: Path) -> None:
    import zmq.auth

    pair = generate_keypair()
    public_path, secret_path = write_certificate(tmp_path, "server", pair)
    assert zmq.auth.load_certificate(secret_path) == (pair.public.encode(), (pair.secret or "").encode())
    assert zmq.auth.load_certificate(public_path) == (pair.public.encode(), None)


def test_secret_file_is_private(tmp_path: Path) -> None:
    public_path, secret_path = write_certificate(tmp_path, "box", generate_keypair())
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    first = generate_keypair()
    write_certificate(tmp_path, "box", first)
    with pytest.raises(ConfigError, match=r"box\.key.* already exists"):
        write_certificate(tmp_path, "box", generate_keypair())
    assert read_certificate(tmp_path / "box.key_secret") == first

    second = generate_keypair()
    _, secret_path = write_certificate(tmp_path, "box", second, overwrite=True)
    assert read_certificate(secret_path) == second
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.key", "box.key_secret"]


def test_a_lone_existing_secret_file_blocks_both(tmp_path: Path) -> None:
    (tmp_path / "box.key_secret").write_text("keep me")
    with pytest.raises(ConfigError, match=r"box\.key_secret already exists"):
        write_certificate(tmp_path, "box", generate_keypair())
    assert not (tmp_path / "box.key").exists()
    assert (tmp_path / "box.key_secret").read_text() == "keep me"


@pytest.mark.parametrize(
    ("name", "pair", "message"),
    [
        pytest.param("box", KeyPair(RFC_PUBLIC), "needs a secret key", id="public-only"),
        pytest.param("../box", KeyPair(RFC_PUBLIC, RFC_SECRET), "plain file name", id="path"),
        pytest.param("", KeyPair(RFC_PUBLIC, RFC_SECRET), "plain file name", id="empty"),
    ],
)
def test_write_refuses_bad_requests(tmp_path: Path, name: str, pair: KeyPair, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_certificate(tmp_path, name, pair)
    assert list(tmp_path.iterdir()) == []


def test_write_into_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        write_certificate(tmp_path / "nope", "box", generate_keypair())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(CZMQ_SECRET_FILE, id="czmq"),
        pytest.param(
            f"curve\r\npublic-key = '{RFC_PUBLIC}'\r\nsecret-key = '{RFC_SECRET}'\r\n",
            id="single-quotes-crlf",
        ),
        pytest.param(f"public-key={RFC_PUBLIC}\nsecret-key = {RFC_SECRET}  \n", id="unquoted"),
        pytest.param(f'#  opq_curve_gen\n    secret-key = "{RFC_SECRET}"\n', id="secret-only"),
    ],
)
def test_read_tolerates_czmq_and_opq_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "opqserver_secret"
    path.write_text(text, newline="")
    assert read_certificate(path) == KeyPair(RFC_PUBLIC, RFC_SECRET)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("metadata\ncurve\n", "has no public-key line", id="no-key"),
        pytest.param(f'public-key = "{RFC_PUBLIC[:39]}"\n', "line 1 has 39 characters, not 40", id="short"),
        pytest.param(f'public-key = "{RFC_PUBLIC[:39]},"\n', "characters outside Z85: ','", id="alphabet"),
        pytest.param('public-key = "' + "#" * 40 + '"\n', "not decodable Z85", id="overflow"),
        pytest.param(
            f'public-key = "{RFC_PUBLIC}"\npublic-key = "{RFC_PUBLIC}"\n',
            "second public-key on line 2",
            id="twice",
        ),
        pytest.param(
            f'public-key = "{generate_keypair().public}"\nsecret-key = "{RFC_SECRET}"\n',
            "does not belong to the secret key",
            id="mismatch",
        ),
    ],
)
def test_read_reports_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        read_certificate(path)
    assert str(path) in str(caught.value)


def test_read_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read certificate .*missing\.key"):
        read_certificate(tmp_path / "missing.key")


def test_curve_handshake_with_keys_read_from_files(tmp_path: Path) -> None:
    write_certificate(tmp_path, "server", generate_keypair())
    write_certificate(tmp_path, "box", generate_keypair())
    server_keys = read_certificate(tmp_path / "server.key_secret")
    server_public = read_certificate(tmp_path / "server.key").public
    box_keys = read_certificate(tmp_path / "box.key_secret")
    assert server_keys.secret is not None
    assert box_keys.secret is not None

    context = zmq.Context()
    try:
        server = context.socket(zmq.PULL)
        server.linger = 0
        server.curve_server = True
        server.curve_secretkey = server_keys.secret.encode("ascii")
        server.rcvtimeo = 2000
        port = server.bind_to_random_port("tcp://127.0.0.1")

        box = context.socket(zmq.PUSH)
        box.linger = 0
        box.curve_serverkey = server_public.encode("ascii")
        box.curve_publickey = box_keys.public.encode("ascii")
        box.curve_secretkey = box_keys.secret.encode("ascii")
        box.connect(f"tcp://127.0.0.1:{port}")
        box.send(b"hello over CURVE")

        assert server.recv() == b"hello over CURVE"
    finally:
        context.destroy(linger=0)  # closes both sockets, also when the assertion fails
