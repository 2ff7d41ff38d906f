"""VNC authentication: the bit-reversed DES key and the challenge response."""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd.rfb import vncauth


class VncAuthTests(SynchronousTestCase):

    def test_known_vector(self):
        """"password" and challenge 00..0f give rfbproto's known response."""
        self.assertEqual(vncauth.des_key(b"password").hex(), "0e86ceceeef64e26")
        self.assertEqual(vncauth.challenge_response(b"password", bytes(range(16))).hex(),
                         "b866924125c8eebb9debc1db61c538e2")

    def test_key_is_truncated_and_padded(self):
        """Passwords are cut or NUL-padded to 8 bytes before the bits are reversed."""
        self.assertEqual(vncauth.des_key(b"passwordXYZ"), vncauth.des_key(b"password"))
        self.assertEqual(vncauth.des_key(b"ab"), bytes([0x86, 0x46, 0, 0, 0, 0, 0, 0]))

    @given(st.binary(max_size=12).filter(lambda p: not vncauth.is_empty_password(p)),
           st.binary(min_size=16, max_size=16))
    def test_check_accepts_only_the_right_response(self, password, challenge):
        """check_response accepts the true response and rejects any other."""
        good = vncauth.challenge_response(password, challenge)
        self.assertTrue(vncauth.check_response(password, challenge, good))
        bad = bytes([good[0] ^ 1]) + good[1:]
        self.assertFalse(vncauth.check_response(password, challenge, bad))
        self.assertFalse(vncauth.check_response(None, challenge, good))
        self.assertFalse(vncauth.check_response(password, challenge, good[:15]))

    @given(st.integers(min_value=0, max_value=8), st.binary(max_size=4),
           st.binary(min_size=16, max_size=16))
    def test_empty_password_never_matches(self, nuls, tail, challenge):
        """An empty password, or one whose first 8 bytes are NUL, matches no response,
        not even its own (which is what a client with an empty password sends)."""
        password = b"\0" * nuls + (tail if nuls == 8 else b"")
        self.assertTrue(vncauth.is_empty_password(password))
        for sent in (password, b""):
            response = vncauth.challenge_response(sent, challenge)
            self.assertFalse(vncauth.check_response(password, challenge, response))

    def test_nul_led_password_is_not_empty(self):
        """A password with any non-NUL byte among its first 8 is a real password."""
        self.assertFalse(vncauth.is_empty_password(b"\0\0\0\0\0\0\0x"))
        self.assertTrue(vncauth.is_empty_password(b"\0\0\0\0\0\0\0\0x"))

    def test_challenge_size(self):
        """A challenge of the wrong size is a programming error."""
        self.assertRaises(ValueError, vncauth.challenge_response, b"x", b"short")

    def test_constant_time_compare(self):
        """The comparison is hmac.compare_digest (no early exit on the first byte)."""
        calls = []
        original = vncauth.hmac.compare_digest

        def spy(a, b):
            calls.append((a, b))
            return original(a, b)

        self.patch(vncauth.hmac, "compare_digest", spy)
        vncauth.check_response(b"pw", bytes(16), bytes(16))
        self.assertEqual(len(calls), 1)

    def test_reused_encryptor_follows_the_key(self):
        """The cached DES context answers again only for the same key: alternating
        passwords, a changed one and a repeated challenge all give what a fresh
        context gives (and the known vector)."""
        vector = bytes(range(16))
        for password in (b"password", b"other", b"password", b"password", b"passwordXYZ", b"x"):
            for challenge in (vector, bytes(16), vector):
                self.assertEqual(vncauth.challenge_response(password, challenge),
                                 _fresh_response(password, challenge))
        self.assertEqual(vncauth.challenge_response(b"password", vector).hex(),
                         "b866924125c8eebb9debc1db61c538e2")

    def test_threads_get_their_own_encryptor(self):
        """Responses computed in several threads at once, each with its own
        password, are each what a fresh cipher context gives."""
        import threading

        challenges = [bytes([i]) * 8 + bytes([255 - i]) * 8 for i in range(200)]
        expected = {(n, c): _fresh_response(b"pw%d" % n, c) for n in range(4) for c in challenges}
        errors = []

        def work(n):
            for challenge in challenges:
                if vncauth.challenge_response(b"pw%d" % n, challenge) != expected[n, challenge]:
                    errors.append((n, challenge))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


def _fresh_response(password: bytes, challenge: bytes) -> bytes:
    """The challenge response from a DES context made for this call alone."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(TripleDES(vncauth.des_key(password) * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()
