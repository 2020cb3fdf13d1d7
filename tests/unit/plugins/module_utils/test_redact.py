import base64

from puller.core._redact import MASK, redact, secrets_of


def test_redacts_every_secret_and_the_basic_auth_form():
    auth = {"username": "tom", "password": "pa55", "identitytoken": "idtok", "email": "t@x"}
    secrets = secrets_of(auth)
    basic = base64.b64encode(b"tom:pa55").decode()
    text = redact("bad pa55 and idtok and Basic %s for tom" % basic, secrets)
    assert "pa55" not in text and "idtok" not in text and basic not in text
    assert text.count(MASK) == 3 and "tom" in text


def test_no_auth_no_change():
    assert secrets_of({}) == () and redact("x", ()) == "x"
