"""Tests for creds.pem: file lookup and reading, PEM framing and the decoders."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from creds import pem
from creds.objects import ObjectError
from creds.pem import Fault, PEMError
from tests import certgen


def _block(label: str, der: bytes, headers: str = "") -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{headers}{body}-----END {label}-----\n".encode()


def _dh_der(p: int, g: int) -> bytes:
    def integer(n: int) -> bytes:
        raw = n.to_bytes(n.bit_length() // 8 + 1, "big")
        return b"\x02" + _length(len(raw)) + raw
    body = integer(p) + integer(g)
    return b"\x30" + _length(len(body)) + body


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


class _Fixtures:
    root = certgen.ca("pem CA")
    leaf = certgen.server(root, "pem.example")
    crl = certgen.crl(root, [leaf])


F = _Fixtures


class FileTests(SynchronousTestCase):
    """credential_path() and read_file(): QEMU's lookup rule and GLib's wording."""

    def test_path_joined_without_normalisation(self) -> None:
        """The path is dir + '/' + name, exactly as QEMU builds it."""
        d = self.mktemp()
        os.makedirs(d)
        open(os.path.join(d, "ca-cert.pem"), "wb").close()
        self.assertEqual(pem.credential_path(d + "/", "ca-cert.pem", True),
                         d + "//ca-cert.pem")

    def test_missing_optional_is_absent(self) -> None:
        """A missing optional file is None; a missing required one is QEMU's error."""
        d = self.mktemp()
        os.makedirs(d)
        self.assertIsNone(pem.credential_path(d, "ca-crl.pem", False))
        e = self.assertRaises(ObjectError, pem.credential_path, d, "ca-cert.pem", True)
        self.assertEqual(e.message, f"Unable to access credentials {d}/ca-cert.pem: "
                                    "No such file or directory")
        self.assertEqual(e.path, f"{d}/ca-cert.pem")
        self.assertTrue(e.hint)

    def test_other_stat_errors_fail_even_optional(self) -> None:
        """A lookup failure other than 'no such file' is an error for optional files too."""
        f = self.mktemp()
        open(f, "wb").close()
        e = self.assertRaises(ObjectError, pem.credential_path, f, "ca-crl.pem", False)
        self.assertEqual(e.message,
                         f"Unable to access credentials {f}/ca-crl.pem: Not a directory")

    def test_no_dir(self) -> None:
        """Without dir, required files fail with QEMU's message and optional ones are absent."""
        e = self.assertRaises(ObjectError, pem.credential_path, None, "ca-cert.pem", True)
        self.assertEqual(e.message, "Missing 'dir' property value")
        self.assertIsNone(pem.credential_path(None, "dh-params.pem", False))

    def test_read_file(self) -> None:
        """A file is read whole; missing files and directories get GLib's messages."""
        d = self.mktemp()
        os.makedirs(d)
        path = os.path.join(d, "f")
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        self.assertEqual(pem.read_file(path), b"x" * 100)
        e = self.assertRaises(pem.FileReadError, pem.read_file, path + "-missing")
        self.assertEqual(str(e), f"Failed to open file “{path}-missing”: "
                                 "No such file or directory")
        e = self.assertRaises(pem.FileReadError, pem.read_file, d)
        self.assertEqual(str(e), f"Error reading file “{d}”: Is a directory")

    def test_read_limit(self) -> None:
        """A file over the limit is refused after reading at most limit+1 bytes."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"x" * 101)
        self.assertEqual(len(pem.read_file(path, 101)), 101)
        e = self.assertRaises(pem.FileReadError, pem.read_file, path, 100)
        self.assertIn("larger than the limit of 100 bytes", str(e))


class FramingTests(SynchronousTestCase):
    """split_pem(): blocks, headers, tolerated text and refused damage."""

    def test_blocks_in_order_with_text_around(self) -> None:
        """Blocks come back in file order; text outside blocks is ignored."""
        data = (b"Bag Attributes\n    friendlyName: x\n" + F.leaf.pem() + b"\nnote\n"
                + F.root.pem() + b"trailer")
        blocks = pem.split_pem(data)
        self.assertEqual([b.label for b in blocks], ["CERTIFICATE", "CERTIFICATE"])
        self.assertEqual([b.index for b in blocks], [1, 2])
        self.assertEqual(blocks[0].line, 3)
        self.assertEqual(blocks[1].der, F.root.cert.public_bytes(serialization.Encoding.DER))

    def test_crlf_and_indent(self) -> None:
        """CRLF line ends and surrounding blanks are accepted."""
        data = b"  " + F.leaf.pem().replace(b"\n", b"\r\n  ")
        self.assertEqual(pem.parse_certificates(data)[0], F.leaf.cert)

    def test_nul_ends_the_data(self) -> None:
        """Everything from the first NUL byte on is ignored, as QEMU's C strings do."""
        self.assertEqual(len(pem.parse_certificates(F.leaf.pem() + b"\0" + b"junk")), 1)
        e = self.assertRaises(PEMError, pem.parse_certificates, b"\0" + F.leaf.pem())
        self.assertIs(e.kind, Fault.NO_BLOCK)

    def test_headers(self) -> None:
        """RFC 1421 header lines before the body are kept apart from the base64."""
        data = _block("RSA PRIVATE KEY", b"\x30\x00",
                      "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n")
        block = pem.split_pem(data)[0]
        self.assertEqual(block.headers, (("Proc-Type", "4,ENCRYPTED"),
                                         ("DEK-Info", "AES-128-CBC,00")))
        self.assertEqual(block.der, b"\x30\x00")

    def test_unterminated(self) -> None:
        """A BEGIN without END (a truncated file) is UNTERMINATED, with its line."""
        data = F.leaf.pem()[:200]
        e = self.assertRaises(PEMError, pem.split_pem, data)
        self.assertIs(e.kind, Fault.UNTERMINATED)
        self.assertIn("line 1", e.detail)

    def test_begin_inside_block(self) -> None:
        """A second BEGIN before the first END is UNTERMINATED."""
        data = F.leaf.pem()[:200] + b"\n" + F.root.pem()
        self.assertIs(self.assertRaises(PEMError, pem.split_pem, data).kind,
                      Fault.UNTERMINATED)

    def test_mismatched_end(self) -> None:
        """An END line for another label is UNTERMINATED."""
        data = F.leaf.pem().replace(b"END CERTIFICATE", b"END X509 CRL")
        self.assertIs(self.assertRaises(PEMError, pem.split_pem, data).kind,
                      Fault.UNTERMINATED)

    def test_bad_base64(self) -> None:
        """A body that is not base64, or damaged base64, is BAD_BASE64."""
        for body in (b"!!!!", b"QUJD$", b"QUJ"):
            data = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
            e = self.assertRaises(PEMError, pem.split_pem, data)
            self.assertIs(e.kind, Fault.BAD_BASE64, body)

    def test_empty_block(self) -> None:
        """A block without body is BAD_DER."""
        data = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
        self.assertIs(self.assertRaises(PEMError, pem.split_pem, data).kind, Fault.BAD_DER)

    def test_unwanted_blocks_not_decoded(self) -> None:
        """Blocks with other labels are framed but their bodies are not decoded."""
        data = b"-----BEGIN JUNK-----\n!!!\n-----END JUNK-----\n" + F.leaf.pem()
        self.assertEqual(len(pem.parse_certificates(data)), 1)

    def test_block_size_limit(self) -> None:
        """A block body over MAX_BLOCK_SIZE is refused as LIMIT."""
        body = b"QUFB\n" * (pem.MAX_BLOCK_SIZE // 4 + 1)
        data = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
        e = self.assertRaises(PEMError, pem.split_pem, data)
        self.assertIs(e.kind, Fault.LIMIT)

    def test_block_count_limit(self) -> None:
        """More than MAX_BLOCKS blocks are refused as LIMIT."""
        data = b"-----BEGIN X-----\nQUFB\n-----END X-----\n" * (pem.MAX_BLOCKS + 1)
        self.assertIs(self.assertRaises(PEMError, pem.split_pem, data).kind, Fault.LIMIT)


class CertificateTests(SynchronousTestCase):
    """parse_certificates() and parse_crls()."""

    def test_all_certificates(self) -> None:
        """Every certificate of a file comes back, in order; both labels are accepted."""
        data = F.leaf.pem() + F.root.pem().replace(b"CERTIFICATE", b"X509 CERTIFICATE")
        self.assertEqual(pem.parse_certificates(data), (F.leaf.cert, F.root.cert))

    def test_no_certificate(self) -> None:
        """A file without certificate block is NO_BLOCK (other blocks do not count)."""
        for data in (b"", b"hello\n", F.leaf.key_pem()):
            self.assertIs(self.assertRaises(PEMError, pem.parse_certificates, data).kind,
                          Fault.NO_BLOCK)

    def test_bad_der(self) -> None:
        """Base64 that is not a certificate is BAD_DER naming the certificate's number."""
        data = F.leaf.pem() + _block("CERTIFICATE", b"\x30\x03\x02\x01\x05")
        e = self.assertRaises(PEMError, pem.parse_certificates, data)
        self.assertIs(e.kind, Fault.BAD_DER)
        self.assertIn("certificate 2", e.detail)

    def test_certificate_count_limit(self) -> None:
        """More than MAX_CERTS certificates are refused as LIMIT."""
        data = F.root.pem() * (pem.MAX_CERTS + 1)
        self.assertIs(self.assertRaises(PEMError, pem.parse_certificates, data).kind,
                      Fault.LIMIT)

    def test_crls(self) -> None:
        """CRLs are decoded; a certificate is not a CRL."""
        data = F.crl.public_bytes(serialization.Encoding.PEM)
        (crl,) = pem.parse_crls(data)
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(
            F.leaf.cert.serial_number))
        self.assertIs(self.assertRaises(PEMError, pem.parse_crls, F.leaf.pem()).kind,
                      Fault.NO_BLOCK)
        self.assertIs(self.assertRaises(PEMError, pem.parse_crls,
                                        _block("X509 CRL", b"\x30\x00")).kind, Fault.BAD_DER)


class KeyTests(SynchronousTestCase):
    """parse_private_key(): formats, encryption and refusals."""

    def _public(self, key) -> bytes:
        return key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    def assertSameKey(self, key, expected) -> None:
        self.assertEqual(self._public(key), self._public(expected))

    def test_formats(self) -> None:
        """RSA and EC keys load from PKCS#8 and traditional PEM, plain or encrypted."""
        for kind, size in (("rsa", 2048), ("ec", 256), ("ec", 384)):
            k = certgen.key(kind, size)
            for fmt in ("pkcs8", "traditional"):
                self.assertSameKey(pem.parse_private_key(certgen.key_pem(k, None, fmt), None), k)
                enc = certgen.key_pem(k, b"pw", fmt)
                self.assertSameKey(pem.parse_private_key(enc, b"pw"), k)

    def test_ed25519(self) -> None:
        """An Ed25519 PKCS#8 key loads."""
        k = ed25519.Ed25519PrivateKey.generate()
        data = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
        self.assertSameKey(pem.parse_private_key(data, None), k)

    def test_password_ignored_for_plain_key(self) -> None:
        """A password given for an unencrypted key is ignored."""
        k = certgen.key("rsa")
        self.assertSameKey(pem.parse_private_key(certgen.key_pem(k), b"unused"), k)

    def test_encrypted_without_or_with_wrong_password(self) -> None:
        """An encrypted key without or with a wrong password is DECRYPT; no password shows."""
        for fmt in ("pkcs8", "traditional"):
            data = certgen.key_pem(certgen.key("rsa"), b"right-pw", fmt)
            for password in (None, b"wrong-pw"):
                e = self.assertRaises(PEMError, pem.parse_private_key, data, password)
                self.assertIs(e.kind, Fault.DECRYPT)
                self.assertNotIn("pw", e.detail)

    def test_first_key_wins(self) -> None:
        """The first private key block of the file is used; other blocks are ignored."""
        k1, k2 = certgen.key("rsa", 2048, 0), certgen.key("rsa", 2048, 1)
        data = F.leaf.pem() + certgen.key_pem(k1) + certgen.key_pem(k2)
        self.assertSameKey(pem.parse_private_key(data, None), k1)

    def test_unsupported(self) -> None:
        """DSA and OpenSSH keys are refused as UNSUPPORTED."""
        k = dsa.generate_private_key(2048)
        data = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
        self.assertIs(self.assertRaises(PEMError, pem.parse_private_key, data, None).kind,
                      Fault.UNSUPPORTED)
        ssh = _block("OPENSSH PRIVATE KEY", b"openssh-key-v1\0")
        self.assertIs(self.assertRaises(PEMError, pem.parse_private_key, ssh, None).kind,
                      Fault.UNSUPPORTED)

    def test_no_key_and_bad_der(self) -> None:
        """No key block is NO_BLOCK; a damaged one is BAD_DER."""
        self.assertIs(self.assertRaises(PEMError, pem.parse_private_key,
                                        F.leaf.pem(), None).kind, Fault.NO_BLOCK)
        bad = _block("PRIVATE KEY", b"\x30\x03\x02\x01\x05")
        self.assertIs(self.assertRaises(PEMError, pem.parse_private_key, bad, None).kind,
                      Fault.BAD_DER)


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


_OID_P256 = bytes.fromhex("06082a8648ce3d030107")
_OID_EC = bytes.fromhex("06072a8648ce3d0201")


def _gnutls_sec1(key) -> bytes:
    """A P-256 key in SEC1 DER with the scalar written as GnuTLS does: 33 bytes, 00 first."""
    der = key.private_bytes(serialization.Encoding.DER,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    assert der[:2] == b"\x30\x77" and der[5:7] == b"\x04\x20"
    return b"\x30\x78" + der[2:5] + b"\x04\x21\x00" + der[7:]


def _pkcs8(sec1: bytes) -> bytes:
    return _tlv(0x30, _tlv(0x02, b"\x00") + _tlv(0x30, _OID_EC + _OID_P256) + _tlv(0x04, sec1))


def _pbes2(inner: bytes, password: bytes, iterations: int = 1000) -> bytes:
    """``inner`` encrypted the way certtool --pkcs8 does (PBKDF2-SHA256, AES-128-CBC)."""
    salt, iv = b"s" * 15, b"i" * 16
    key = PBKDF2HMAC(hashes.SHA256(), 16, salt, iterations).derive(password)
    padder = sym_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    data = enc.update(padder.update(inner) + padder.finalize()) + enc.finalize()
    prf = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d0209")) + b"\x05\x00")
    kdf = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01050c")) + _tlv(
        0x30, _tlv(0x04, salt) + _tlv(0x02, iterations.to_bytes(4, "big")) + prf))
    scheme = _tlv(0x30, _tlv(0x06, bytes.fromhex("608648016503040102")) + _tlv(0x04, iv))
    algorithm = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01050d"))
                     + _tlv(0x30, kdf + scheme))
    return _tlv(0x30, algorithm + _tlv(0x04, data))


class GnuTLSKeyTests(SynchronousTestCase):
    """EC keys as GnuTLS' certtool writes them (scalar with a leading zero byte)."""

    def setUp(self) -> None:
        self.key = certgen.key("ec", 256)
        self.expected = self.key.private_numbers().private_value

    def test_sec1_and_pkcs8(self) -> None:
        """GnuTLS' SEC1 and PKCS#8 forms load although cryptography refuses them."""
        sec1 = _gnutls_sec1(self.key)
        self.assertRaises(ValueError, serialization.load_der_private_key, sec1, None)
        for data in (_block("EC PRIVATE KEY", sec1), _block("PRIVATE KEY", _pkcs8(sec1))):
            key = pem.parse_private_key(data, None)
            self.assertEqual(key.private_numbers().private_value, self.expected)

    def test_encrypted(self) -> None:
        """GnuTLS' PBES2-encrypted form loads with the right password only."""
        data = _block("ENCRYPTED PRIVATE KEY", _pbes2(_pkcs8(_gnutls_sec1(self.key)), b"pw"))
        key = pem.parse_private_key(data, b"pw")
        self.assertEqual(key.private_numbers().private_value, self.expected)
        for password in (b"wrong", None):
            self.assertIs(self.assertRaises(PEMError, pem.parse_private_key, data,
                                            password).kind, Fault.DECRYPT)

    def test_iteration_limit(self) -> None:
        """A PBKDF2 iteration count over MAX_PBKDF2_ITERATIONS is refused unopened."""
        for inner in (_pkcs8(_gnutls_sec1(self.key)),
                      self.key.private_bytes(serialization.Encoding.DER,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())):
            data = _block("ENCRYPTED PRIVATE KEY",
                          _pbes2(inner, b"pw", 1000).replace(
                              (1000).to_bytes(4, "big"),
                              (pem.MAX_PBKDF2_ITERATIONS + 1).to_bytes(4, "big")))
            e = self.assertRaises(PEMError, pem.parse_private_key, data, b"pw")
            self.assertIs(e.kind, Fault.LIMIT)
            self.assertIn("PBKDF2 iterations", e.detail)


class DHTests(SynchronousTestCase):
    """parse_dh_params() and load_dh_params_file()."""

    def test_ffdhe2048(self) -> None:
        """RFC 7919 ffdhe2048 loads and comes back as one canonical PEM block."""
        out = pem.parse_dh_params(b"comment\n" + certgen.FFDHE2048_PEM)
        self.assertEqual(pem.split_pem(out)[0].der, pem.split_pem(certgen.FFDHE2048_PEM)[0].der)
        self.assertTrue(out.startswith(b"-----BEGIN DH PARAMETERS-----\n"))

    def test_structure_refused(self) -> None:
        """Malformed SEQUENCEs, even primes, small primes and bad generators are BAD_DER."""
        p2048 = (1 << 2047) | 1
        for der in (b"\x30\x00", b"\x02\x01\x05", _dh_der(p2048 + 1, 2),
                    _dh_der((1 << 255) | 1, 2), _dh_der(p2048, 1),
                    _dh_der(p2048, 2) + b"\x00"):
            e = self.assertRaises(PEMError, pem.parse_dh_params, _block("DH PARAMETERS", der))
            self.assertIs(e.kind, Fault.BAD_DER, der[:8])

    def test_prime_size_limit(self) -> None:
        """A prime over MAX_DH_BITS is refused as LIMIT."""
        big = (1 << pem.MAX_DH_BITS) | 1
        e = self.assertRaises(PEMError, pem.parse_dh_params,
                              _block("DH PARAMETERS", _dh_der(big, 2)))
        self.assertIs(e.kind, Fault.LIMIT)

    def test_file_messages(self) -> None:
        """dh-params.pem faults get QEMU's messages naming the file."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"junk\n")
        e = self.assertRaises(ObjectError, pem.load_dh_params_file, path)
        self.assertEqual(e.message, f"Unable to load DH parameters from {path}: "
                                    "Base64 unexpected header error.")
        self.assertTrue(e.hint)
        e = self.assertRaises(ObjectError, pem.load_dh_params_file, path + "-missing")
        self.assertEqual(e.message, f"Failed to open file “{path}-missing”: "
                                    "No such file or directory")


class ReasonTests(SynchronousTestCase):
    """gnutls_reason(): GnuTLS' words for each fault, by the file's role."""

    def test_roles(self) -> None:
        """The same fault reads differently in different files, as GnuTLS says it."""
        no_block = PEMError(Fault.NO_BLOCK, "x")
        self.assertEqual(pem.gnutls_reason(no_block, "cert"), "Base64 unexpected header error.")
        self.assertEqual(pem.gnutls_reason(no_block, "keypair-cert"), "Base64 decoding error.")
        self.assertEqual(pem.gnutls_reason(no_block, "key"),
                         "The requested data were not available.")
        self.assertEqual(pem.gnutls_reason(no_block, "crl"), "Base64 decoding error.")
        self.assertEqual(pem.gnutls_reason(PEMError(Fault.DECRYPT, "x"), "key"),
                         "Decryption has failed.")
        self.assertEqual(pem.gnutls_reason(PEMError(Fault.LIMIT, "too big"), "cert"),
                         "too big")


# -- garbage -----------------------------------------------------------------------

_PARSERS = (
    pem.split_pem,
    pem.parse_certificates,
    pem.parse_crls,
    lambda data: pem.parse_private_key(data, None),
    lambda data: pem.parse_private_key(data, b"pw"),
    pem.parse_dh_params,
)

_SAMPLES = (
    F.leaf.pem() + F.root.pem(),
    F.crl.public_bytes(serialization.Encoding.PEM),
    certgen.key_pem(certgen.key("ec", 256)),
    certgen.key_pem(certgen.key("ec", 256), b"pw", "traditional"),
    certgen.FFDHE2048_PEM,
)

_pem_like = st.lists(st.one_of(
    st.sampled_from([b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----",
                     b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----",
                     b"-----BEGIN DH PARAMETERS-----", b"-----END DH PARAMETERS-----",
                     b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----",
                     b"Proc-Type: 4,ENCRYPTED", b"", b"MAMCAQU=", b"\r"]),
    st.binary(max_size=40).map(lambda b: base64.b64encode(b)),
    st.binary(max_size=20),
), max_size=12).map(b"\n".join)


def _only_pem_errors(data: bytes) -> None:
    for parse in _PARSERS:
        try:
            parse(data)
        except PEMError as e:
            assert isinstance(e.kind, Fault)
            assert e.detail


class GarbageTests(SynchronousTestCase):
    """Any input either decodes or raises PEMError -- never anything else."""

    @given(st.binary(max_size=2000))
    def test_random_bytes(self, data: bytes) -> None:
        """Random bytes never raise anything but PEMError."""
        _only_pem_errors(data)

    @given(_pem_like)
    def test_pem_like_text(self, data: bytes) -> None:
        """Random arrangements of PEM lines and base64 never raise anything but PEMError."""
        _only_pem_errors(data)

    @given(st.sampled_from(_SAMPLES), st.data())
    def test_damaged_valid_files(self, sample: bytes, data) -> None:
        """Valid files with bytes flipped, cut or inserted never raise anything but PEMError."""
        buf = bytearray(sample)
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            pos = data.draw(st.integers(0, len(buf) - 1))
            if op == "flip":
                buf[pos] ^= data.draw(st.integers(1, 255))
            elif op == "cut":
                del buf[pos:pos + data.draw(st.integers(1, 64))]
            else:
                buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
            if not buf:
                break
        _only_pem_errors(bytes(buf))
