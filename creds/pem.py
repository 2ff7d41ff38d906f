"""Reading credential files and decoding the PEM blocks in them.

Everything :mod:`creds.x509`, :mod:`creds.anon`, :mod:`creds.secret` and
:mod:`creds.authz` read from disk goes through here: QEMU's rule for
finding a file in the credentials directory (:func:`credential_path`),
bounded, never-blocking reading of regular files only, with GLib's
wording for failures (:func:`read_file`), and strict decoders
for certificates, CRLs, private keys (PKCS#8 or traditional, RSA / EC /
EdDSA, encrypted or not) and finite-field DH parameters.

The decoders are pure functions of bytes: they raise :class:`PEMError`,
whose :attr:`~PEMError.kind` says what was wrong and whose
:attr:`~PEMError.detail` says where, in words for the administrator.
:func:`gnutls_reason` turns a kind into the text GnuTLS (and so QEMU)
prints for the same fault in the same kind of file, because QEMU's error
messages are part of vncd's interface.

This module knows nothing about TLS sessions, VNC or the object registry
beyond raising :class:`~creds.objects.ObjectError`; it never includes key
material or passwords in an error.
"""

from __future__ import annotations

import base64
import binascii
import enum
import errno
import os
import re
import stat
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from creds import der as _der
from creds.objects import ObjectError

__all__ = [
    "MAX_FILE_SIZE", "MAX_BLOCK_SIZE", "MAX_BLOCKS", "MAX_CERTS", "MAX_DH_BITS",
    "PEMError", "Fault", "PemBlock", "FileReadError", "NotRegularFileError",
    "credential_path", "read_file", "read_regular_file", "split_pem",
    "parse_certificates", "parse_crls", "parse_private_key", "parse_dh_params",
    "gnutls_reason", "SUPPORTED_KEY_TYPES", "load_dh_params_file", "READ_ERROR",
    "MAX_PBKDF2_ITERATIONS",
]

#: Largest credential file read.  Public CA bundles are about 250 KiB and a
#: CRL of a busy private CA a few hundred KiB; 4 MiB is ample and bounds
#: what one misnamed file (a disk image, a log) can make us hold in memory.
MAX_FILE_SIZE = 4 * 1024 * 1024

#: Largest base64 body of one certificate, key or DH block.  A certificate
#: with hundreds of SANs or a 16384-bit RSA key stays under 20 KiB.  CRL
#: blocks are bounded by :data:`MAX_FILE_SIZE` only: they grow with every
#: revocation.
MAX_BLOCK_SIZE = 64 * 1024

#: Most PEM blocks (of any label) looked at in one file.  Bounds the work
#: per file even when every block is tiny.
MAX_BLOCKS = 2000

#: Most certificates accepted in one file.  The Mozilla bundle holds about
#: 150; QEMU 7.2 silently used only the first 16 of ``ca-cert.pem`` (10.1
#: lifted that limit), vncd takes up to this many and refuses more.
MAX_CERTS = 1000

#: Largest DH prime accepted.  RFC 7919 stops at 8192 bits; larger groups
#: only make every handshake slower.
MAX_DH_BITS = 8192

#: Smallest DH prime that is structurally plausible; real limits (2048 bits
#: at OpenSSL's default security level) are the TLS engine's business.
_MIN_DH_BITS = 512

#: Labels that carry an X.509 certificate (GnuTLS accepts both).
_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_CRL_LABELS = frozenset({"X509 CRL"})
_DH_LABELS = frozenset({"DH PARAMETERS"})
#: Private key labels: PKCS#8 (plain and encrypted) and the traditional
#: OpenSSL forms (PKCS#1 RSA, SEC1 EC), which may carry Proc-Type headers.
_KEY_LABELS = frozenset({
    "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY",
    "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY",
})
_TRADITIONAL_LABELS = frozenset({"RSA PRIVATE KEY", "EC PRIVATE KEY"})

#: Key types the TLS engine can use for our own certificate.
SUPPORTED_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                       ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)

_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,64})-----\Z")
_END = re.compile(r"-----END ([A-Z0-9 ]{1,64})-----\Z")
_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}:")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]*\Z")


class Fault(enum.Enum):
    """What is wrong with a PEM file."""

    #: No block with a usable label at all (empty file, text, wrong type).
    NO_BLOCK = "no-block"
    #: A BEGIN line without its END line.
    UNTERMINATED = "unterminated"
    #: The text between BEGIN and END is not base64.
    BAD_BASE64 = "bad-base64"
    #: The base64 decodes, but not to the expected DER structure.
    BAD_DER = "bad-der"
    #: An encrypted key without password, or with the wrong one.
    DECRYPT = "decrypt"
    #: A key of a type the TLS engine cannot use.
    UNSUPPORTED = "unsupported"
    #: A block or the number of blocks is over a named limit.
    LIMIT = "limit"
    #: The key could not be checked at all (the checking process failed).
    CHECK = "check"


class PEMError(Exception):
    """A PEM file could not be decoded.

    ``kind`` is a :class:`Fault`; ``detail`` is a short explanation with
    the block number and line, never the file's content.
    """

    def __init__(self, kind: Fault, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class FileReadError(Exception):
    """A file could not be read; ``str()`` is GLib's wording (as QEMU prints it).

    ``reason`` is the fault alone, without the file name (``No such file
    or directory``, ``Is a directory`` ...), for messages worded otherwise.
    """

    def __init__(self, message: str, errno_value: int | None = None, *,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno_value
        self.reason = reason if reason is not None else message.rpartition(": ")[2]


class NotRegularFileError(FileReadError):
    """The file is a FIFO, a device or a socket: never read (it could block
    or never end).  ``what`` says which (``a named pipe (FIFO)`` ...)."""

    def __init__(self, path: str, what: str) -> None:
        reason = f"Is {what}, not a regular file"
        super().__init__(f"Error reading file “{path}”: {reason}", reason=reason)
        self.what = what


@dataclass(frozen=True)
class PemBlock:
    """One ``-----BEGIN label-----`` ... ``-----END label-----`` block."""

    label: str
    #: RFC 1421 header lines (``Proc-Type``, ``DEK-Info``) as (name, value).
    headers: tuple[tuple[str, str], ...]
    der: bytes
    #: 1-based line of the BEGIN line, and 1-based position among all blocks.
    line: int
    index: int


# -- files ---------------------------------------------------------------


def credential_path(directory: str | None, name: str, required: bool) -> str | None:
    """The path of credential file ``name`` in ``directory``, QEMU's way.

    QEMU joins ``dir`` and the name with ``/`` and no normalisation, then
    ``stat()``s it: a missing optional file gives ``None``; a missing
    required file, or any other failure, is an error.  Without ``dir``,
    optional files are absent and required ones an error.
    """
    if directory is None:
        if required:
            raise ObjectError(
                "Missing 'dir' property value",
                hint="set dir= to the directory holding the certificate files",
                check="dir")
        return None
    path = f"{directory}/{name}"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOENT and not required:
            return None
        raise ObjectError(
            f"Unable to access credentials {path}: {os.strerror(e.errno or 0)}",
            hint=_access_hint(directory, name, path, e.errno),
            path=path, check="access") from None
    return path


def _access_hint(directory: str, name: str, path: str, error: int | None) -> str:
    """Advice for a credential file that cannot be reached: names a missing
    ``dir=`` itself rather than the file (QEMU only prints the file's path)."""
    if error in (errno.ENOENT, errno.ENOTDIR):
        try:
            is_dir = stat.S_ISDIR(os.stat(directory).st_mode)
        except OSError:
            return (f"the directory {directory} does not exist: check dir= "
                    f"(vncd-certs create {directory} makes a new one)")
        if not is_dir:
            return f"{directory} is not a directory: dir= must name the directory holding {name}"
        return f"create {name} in {directory}"
    return f"make {path} accessible to the user running vncd"


def read_file(path: str, limit: int = MAX_FILE_SIZE) -> bytes:
    """The content of regular file ``path``, at most ``limit`` bytes.

    Raises :class:`FileReadError` with GLib's ``g_file_get_contents``
    wording (``Failed to open file “P”: …``, ``Error reading file “P”: …``),
    which is what QEMU prints, or with vncd's own text for what GLib would
    block on or read without end (see :func:`read_regular_file`).
    """
    return read_regular_file(path, limit)[0]


def read_regular_file(path: str, limit: int = MAX_FILE_SIZE) -> tuple[bytes, os.stat_result]:
    """The content of regular file ``path`` and the status of what was read.

    Never blocks: the file is opened with ``O_NONBLOCK`` (a FIFO without
    writer would otherwise hold ``open()`` forever) and without becoming
    a controlling terminal, and the *open descriptor* is checked, so a
    file swapped between a check and the open cannot slip through.  A
    directory gives GLib's ``Is a directory``; a FIFO, device or socket
    :class:`NotRegularFileError`; a file over ``limit`` bytes (by its size,
    or by what could be read) vncd's own message.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket (or a device without driver)
            what = _special_kind(path)
            if what is not None:
                raise NotRegularFileError(path, what) from None
        raise FileReadError(f"Failed to open file “{path}”: {os.strerror(e.errno or 0)}",
                            e.errno) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileReadError(f"Error reading file “{path}”: {os.strerror(errno.EISDIR)}",
                                errno.EISDIR)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, _FILE_KINDS.get(stat.S_IFMT(st.st_mode),
                                                            "not a regular file"))
        if st.st_size > limit:
            raise FileReadError(f"File “{path}” is larger than the limit of {limit} bytes",
                                errno.EFBIG,
                                reason=f"the file is {st.st_size} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileReadError(
                    f"File “{path}” is larger than the limit of {limit} bytes",
                    errno.EFBIG, reason=f"the file grew beyond {limit} bytes")
        return b"".join(chunks), st
    except OSError as e:
        raise FileReadError(f"Error reading file “{path}”: {os.strerror(e.errno or 0)}",
                            e.errno) from None
    finally:
        os.close(fd)


#: What a file that is not a regular file is, in messages.
_FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _special_kind(path: str) -> str | None:
    """What ``path`` is when it is a FIFO, device or socket (``None`` otherwise)."""
    try:
        return _FILE_KINDS.get(stat.S_IFMT(os.stat(path).st_mode))
    except OSError:
        return None


# -- PEM framing -----------------------------------------------------------


def split_pem(data: bytes, *, max_block: int = MAX_BLOCK_SIZE,
              wanted: frozenset[str] | None = None) -> list[PemBlock]:
    """Every PEM block in ``data``, in order.

    Text outside blocks (``Bag Attributes``, comments) is ignored, CRLF
    line ends are accepted and, as in QEMU (which hands GnuTLS a C
    string), everything from the first NUL byte on is ignored.  Blocks
    whose label is not in ``wanted`` are framed but not decoded.  Raises
    :class:`PEMError` for an unterminated block, a body that is not base64,
    or a limit exceeded.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    text = data.decode("latin-1")
    blocks: list[PemBlock] = []
    label: str | None = None
    start = 0
    headers: list[tuple[str, str]] = []
    body: list[str] = []
    size = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if label is None:
            m = _BEGIN.match(line)
            if m:
                if len(blocks) >= MAX_BLOCKS:
                    raise PEMError(Fault.LIMIT, f"more than {MAX_BLOCKS} PEM blocks")
                label, start, headers, body, size = m.group(1), lineno, [], [], 0
            continue
        end = _END.match(line)
        if end:
            if end.group(1) != label:
                raise PEMError(Fault.UNTERMINATED,
                               f"block {len(blocks) + 1} (line {start}): "
                               f"'{label}' ends with an END line for '{end.group(1)}'")
            blocks.append(_finish(label, headers, body, start, len(blocks) + 1, wanted))
            label = None
            continue
        if _BEGIN.match(line):
            break
        if not body and _HEADER.match(line):
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
            continue
        if not line:
            continue
        size += len(line)
        if size > max_block:
            raise PEMError(Fault.LIMIT, f"block {len(blocks) + 1} (line {start}): "
                                        f"longer than {max_block} bytes")
        body.append(line)
    if label is not None:
        raise PEMError(Fault.UNTERMINATED,
                       f"block {len(blocks) + 1} (line {start}): "
                       f"'-----BEGIN {label}-----' has no END line (truncated file?)")
    return blocks


def _finish(label: str, headers: list[tuple[str, str]], body: list[str], line: int,
            index: int, wanted: frozenset[str] | None) -> PemBlock:
    if wanted is not None and label not in wanted:
        return PemBlock(label, tuple(headers), b"", line, index)
    joined = "".join(body)
    if not _BASE64_LINE.match(joined):
        raise PEMError(Fault.BAD_BASE64,
                       f"block {index} (line {line}): the text is not base64")
    try:
        der = base64.b64decode(joined, validate=True)
    except (binascii.Error, ValueError):
        raise PEMError(Fault.BAD_BASE64,
                       f"block {index} (line {line}): the base64 text is damaged") from None
    if not der:
        raise PEMError(Fault.BAD_DER, f"block {index} (line {line}): the block is empty")
    return PemBlock(label, tuple(headers), der, line, index)


def _blocks(data: bytes, labels: frozenset[str], what: str,
            max_block: int = MAX_BLOCK_SIZE) -> list[PemBlock]:
    found = [b for b in split_pem(data, max_block=max_block, wanted=labels)
             if b.label in labels]
    if not found:
        raise PEMError(Fault.NO_BLOCK, f"no '-----BEGIN {what}-----' block found")
    return found


# -- decoders --------------------------------------------------------------


def parse_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM file, in file order (at least one)."""
    blocks = _blocks(data, _CERT_LABELS, "CERTIFICATE")
    if len(blocks) > MAX_CERTS:
        raise PEMError(Fault.LIMIT, f"more than {MAX_CERTS} certificates")
    certs = []
    for b in blocks:
        try:
            cert = x509.load_der_x509_certificate(b.der)
            # Names, times and extensions are decoded lazily; decode them
            # now so that a damaged certificate fails here, named.
            cert.subject, cert.issuer, cert.not_valid_after_utc, cert.extensions
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise PEMError(Fault.BAD_DER, f"certificate {b.index} (line {b.line}): "
                                          f"{_short(e)}") from None
        certs.append(cert)
    return tuple(certs)


def parse_crls(data: bytes) -> tuple[x509.CertificateRevocationList, ...]:
    """Every CRL in a PEM file (at least one)."""
    blocks = _blocks(data, _CRL_LABELS, "X509 CRL", max_block=MAX_FILE_SIZE)
    crls = []
    for b in blocks:
        try:
            crl = x509.load_der_x509_crl(b.der)
            crl.issuer, crl.last_update_utc, crl.extensions
            for revoked in crl:
                revoked.serial_number
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise PEMError(Fault.BAD_DER, f"CRL {b.index} (line {b.line}): "
                                          f"{_short(e)}") from None
        crls.append(crl)
    return tuple(crls)


def parse_private_key(data: bytes, password: bytes | None):
    """The first private key in a PEM file, decrypted with ``password`` if needed.

    A password given for an unencrypted key is ignored (as GnuTLS does).
    """
    block = _blocks(data, _KEY_LABELS, "PRIVATE KEY")[0]
    where = f"key (line {block.line})"
    if block.label in ("DSA PRIVATE KEY", "OPENSSH PRIVATE KEY"):
        raise PEMError(Fault.UNSUPPORTED,
                       f"{where}: '{block.label}' keys cannot be used for TLS here; "
                       "use an RSA, EC or Ed25519 key in PKCS#8 form")
    encrypted = block.label == "ENCRYPTED PRIVATE KEY" or any(
        name == "Proc-Type" and "ENCRYPTED" in value for name, value in block.headers)
    if encrypted and password is None:
        raise PEMError(Fault.DECRYPT, f"{where}: the key is encrypted and no password "
                                      "was given")
    if block.label == "ENCRYPTED PRIVATE KEY":
        _check_iterations(block, where)
    try:
        if encrypted and block.label in _TRADITIONAL_LABELS:
            key = serialization.load_pem_private_key(_reencode(block), password)
        else:
            key = serialization.load_der_private_key(
                block.der, password if encrypted else None)
    except UnsupportedAlgorithm as e:
        raise PEMError(Fault.UNSUPPORTED, f"{where}: {_short(e)}") from None
    except (ValueError, TypeError) as e:
        key = _gnutls_key(block, password if encrypted else None)
        if key is None:
            if encrypted:
                raise PEMError(Fault.DECRYPT, f"{where}: decryption failed (wrong "
                                              "password, or a damaged key)") from None
            raise PEMError(Fault.BAD_DER, f"{where}: {_short(e)}") from None
    if not isinstance(key, SUPPORTED_KEY_TYPES):
        raise PEMError(Fault.UNSUPPORTED,
                       f"{where}: {type(key).__name__} keys cannot be used for TLS here")
    return key


def parse_dh_params(data: bytes) -> bytes:
    """The first PKCS#3 DH parameter block, checked and re-encoded as PEM.

    Only the structure is checked here (a SEQUENCE of prime and generator
    of plausible size); whether the group is strong enough is the TLS
    engine's decision.
    """
    block = _blocks(data, _DH_LABELS, "DH PARAMETERS")[0]
    where = f"DH parameters (line {block.line})"
    try:
        p, g = _pkcs3(block.der)
    except ValueError as e:
        raise PEMError(Fault.BAD_DER, f"{where}: {e}") from None
    bits = p.bit_length()
    if bits > MAX_DH_BITS:
        raise PEMError(Fault.LIMIT, f"{where}: the prime has {bits} bits, "
                                    f"more than {MAX_DH_BITS}")
    if bits < _MIN_DH_BITS or p % 2 == 0 or not 1 < g < p - 1:
        raise PEMError(Fault.BAD_DER, f"{where}: not a usable group "
                                      f"({bits}-bit prime, generator {g})")
    body = base64.encodebytes(block.der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (b"-----BEGIN DH PARAMETERS-----\n" + b"\n".join(lines)
            + b"\n-----END DH PARAMETERS-----\n")


# -- keys as GnuTLS writes them ------------------------------------------------

#: Most PBKDF2 iterations accepted for an encrypted key.  GnuTLS' certtool
#: uses 600000 and OpenSSL 2048; ten million takes seconds, which bounds how
#: long one key file can stall start-up.
MAX_PBKDF2_ITERATIONS = 10_000_000

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_PBKDF2 = "1.2.840.113549.1.5.12"
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_PRF = {"1.2.840.113549.2.7": hashes.SHA1, "1.2.840.113549.2.8": hashes.SHA224,
        "1.2.840.113549.2.9": hashes.SHA256, "1.2.840.113549.2.10": hashes.SHA384,
        "1.2.840.113549.2.11": hashes.SHA512}
_AES_CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24,
            "2.16.840.1.101.3.4.1.42": 32}


def _gnutls_key(block: PemBlock, password: bytes | None):
    """An EC key as GnuTLS' certtool writes it, which ``cryptography`` refuses.

    GnuTLS stores the private scalar as a signed integer would be, with a
    leading zero byte half of the time; ``cryptography`` wants exactly the
    curve's size.  The scalar is read here and the key derived from it.
    For ``ENCRYPTED PRIVATE KEY`` blocks the PBES2 (PBKDF2 + AES-CBC)
    envelope GnuTLS and OpenSSL write is opened first.  Returns ``None``
    when the block is something else (or the password is wrong).
    """
    der = block.der
    try:
        if block.label == "ENCRYPTED PRIVATE KEY":
            if password is None:
                return None
            der = _pbes2_decrypt(der, password)
        elif password is not None:
            return None
        return _ec_key(der)
    except (ValueError, LookupError):  # not this format, or a damaged one
        return None


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content start, content end) of every element in ``data[start:end]``."""
    return [(tag, cstart, cend) for _, tag, cstart, cend in _der.children(data, start, end)]


def _oid(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    arcs, value = [], 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _sequence(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    tag, cstart, cend = _der_item(der, start)
    if tag != 0x30 or cend > end:
        raise ValueError("expected a SEQUENCE")
    return _children(der, cstart, cend)


def _ec_key(der: bytes):
    """An EC private key from PKCS#8 or SEC1 DER, whatever the scalar's length."""
    top = _sequence(der, 0, len(der))
    if len(top) < 2 or top[0][0] != 0x02:
        raise ValueError("not a private key")
    version = int.from_bytes(der[top[0][1]:top[0][2]], "big")
    curve_oid = None
    if version == 0:
        algorithm = _children(der, top[1][1], top[1][2])
        if (len(algorithm) != 2 or top[2][0] != 0x04
                or _oid(der[algorithm[0][1]:algorithm[0][2]]) != _OID_EC_PUBLIC_KEY):
            raise ValueError("not an EC key")
        curve_oid = _oid(der[algorithm[1][1]:algorithm[1][2]])
        der = der[top[2][1]:top[2][2]]
        top = _sequence(der, 0, len(der))
        version = int.from_bytes(der[top[0][1]:top[0][2]], "big")
    if version != 1 or top[1][0] != 0x04:
        raise ValueError("not an EC key")
    for tag, cstart, cend in top[2:]:
        if tag == 0xA0:
            (inner,) = _children(der, cstart, cend)
            curve_oid = _oid(der[inner[1]:inner[2]])
    if curve_oid is None:
        raise ValueError("EC key without curve")
    curve = ec.get_curve_for_oid(x509.ObjectIdentifier(curve_oid))()
    scalar = der[top[1][1]:top[1][2]].lstrip(b"\0")
    if len(scalar) > (curve.key_size + 7) // 8:
        raise ValueError("EC private value too long")
    return ec.derive_private_key(int.from_bytes(scalar, "big"), curve)


@dataclass(frozen=True)
class _PBES2:
    """The parameters of a PBES2 (PBKDF2 + AES-CBC) ``EncryptedPrivateKeyInfo``."""

    salt: bytes
    iterations: int
    prf: type
    key_size: int
    iv: bytes
    ciphertext: bytes


def _pbes2(der: bytes) -> _PBES2:
    """Read a PBES2 envelope; ValueError/LookupError for anything else."""
    top = _sequence(der, 0, len(der))
    algorithm = _children(der, top[0][1], top[0][2])
    if _oid(der[algorithm[0][1]:algorithm[0][2]]) != _OID_PBES2:
        raise ValueError("not PBES2")
    kdf, scheme = _children(der, algorithm[1][1], algorithm[1][2])
    kdf_parts = _children(der, kdf[1], kdf[2])
    if _oid(der[kdf_parts[0][1]:kdf_parts[0][2]]) != _OID_PBKDF2:
        raise ValueError("not PBKDF2")
    params = _children(der, kdf_parts[1][1], kdf_parts[1][2])
    prf = hashes.SHA1
    for tag, cstart, cend in params[2:]:
        if tag == 0x30:
            prf_oid = _children(der, cstart, cend)[0]
            prf = _PRF[_oid(der[prf_oid[1]:prf_oid[2]])]
    scheme_parts = _children(der, scheme[1], scheme[2])
    return _PBES2(
        salt=der[params[0][1]:params[0][2]],
        iterations=int.from_bytes(der[params[1][1]:params[1][2]], "big"),
        prf=prf,
        key_size=_AES_CBC[_oid(der[scheme_parts[0][1]:scheme_parts[0][2]])],
        iv=der[scheme_parts[1][1]:scheme_parts[1][2]],
        ciphertext=der[top[1][1]:top[1][2]])


def _pbes2_decrypt(der: bytes, password: bytes) -> bytes:
    """The PKCS#8 content of an ``EncryptedPrivateKeyInfo`` (PBES2, PBKDF2, AES-CBC)."""
    env = _pbes2(der)
    if not 0 < env.iterations <= MAX_PBKDF2_ITERATIONS or len(env.iv) != 16:
        raise ValueError("unusable PBES2 parameters")
    key = PBKDF2HMAC(env.prf(), env.key_size, env.salt, env.iterations).derive(password)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(env.iv)).decryptor()
    plain = decryptor.update(env.ciphertext) + decryptor.finalize()
    return _der.unpad_pkcs7(plain)


def _check_iterations(block: PemBlock, where: str) -> None:
    """Refuse a PBES2 key whose PBKDF2 count would stall start-up, before any work."""
    try:
        iterations = _pbes2(block.der).iterations
    except (ValueError, LookupError):  # another scheme: the library bounds it
        return
    if iterations > MAX_PBKDF2_ITERATIONS:
        raise PEMError(Fault.LIMIT, f"{where}: the key is encrypted with {iterations} "
                                    f"PBKDF2 iterations, more than {MAX_PBKDF2_ITERATIONS}")


# -- QEMU / GnuTLS wording -----------------------------------------------

_HEADER_ERROR = "Base64 unexpected header error."
_DECODING_ERROR = "Base64 decoding error."
_DER_ERROR = "ASN1 parser: Error in DER parsing."
_NOT_AVAILABLE = "The requested data were not available."
_DECRYPT_ERROR = "Decryption has failed."
_UNSUPPORTED = "The requested algorithm or parameter is not supported."

#: What GnuTLS 3.7 answers for each fault, by the role the file plays
#: (observed by running QEMU 7.2 on damaged files):
#: ``cert`` own certificate checked by the sanity check; ``keypair-cert``
#: own certificate loaded with its key (sanity-check=off); ``trust`` CA
#: file loaded as trust list (sanity-check=off; a file without any
#: certificate is refused before, QEMU would trust nobody); ``key``;
#: ``crl``; ``dh``.
_GNUTLS_REASONS: dict[str, dict[Fault, str]] = {
    "cert": {Fault.NO_BLOCK: _HEADER_ERROR, Fault.UNTERMINATED: _HEADER_ERROR,
             Fault.BAD_BASE64: _HEADER_ERROR, Fault.BAD_DER: _DER_ERROR},
    "keypair-cert": {Fault.NO_BLOCK: _DECODING_ERROR, Fault.UNTERMINATED: _HEADER_ERROR,
                     Fault.BAD_BASE64: _HEADER_ERROR, Fault.BAD_DER: _DER_ERROR},
    "trust": {Fault.UNTERMINATED: _HEADER_ERROR, Fault.BAD_BASE64: _HEADER_ERROR,
              Fault.BAD_DER: _DER_ERROR},
    "key": {Fault.NO_BLOCK: _NOT_AVAILABLE, Fault.UNTERMINATED: _DECODING_ERROR,
            Fault.BAD_BASE64: _DECODING_ERROR, Fault.BAD_DER: _DER_ERROR,
            Fault.DECRYPT: _DECRYPT_ERROR, Fault.UNSUPPORTED: _UNSUPPORTED},
    "crl": {Fault.NO_BLOCK: _DECODING_ERROR, Fault.UNTERMINATED: _DECODING_ERROR,
            Fault.BAD_BASE64: _DECODING_ERROR, Fault.BAD_DER: _DER_ERROR},
    "dh": {Fault.NO_BLOCK: _HEADER_ERROR, Fault.UNTERMINATED: _DECODING_ERROR,
           Fault.BAD_BASE64: _HEADER_ERROR, Fault.BAD_DER: _DER_ERROR},
}

#: GnuTLS's text for a file it could not read.
READ_ERROR = "Error while reading file."


def gnutls_reason(error: PEMError, role: str) -> str:
    """The GnuTLS error text QEMU shows for ``error`` in a file playing ``role``.

    Faults GnuTLS has no equivalent for (vncd's limits) give vncd's own
    detail instead.
    """
    return _GNUTLS_REASONS[role].get(error.kind, error.detail)


def load_dh_params_file(path: str) -> bytes:
    """Read and check ``dh-params.pem`` with QEMU's messages (shared by x509 and anon)."""
    try:
        data = read_file(path)
    except FileReadError as e:
        # QEMU passes GLib's message on unprefixed.
        raise ObjectError(str(e), hint="dh-params.pem must be a readable file",
                          path=path, check="dh-params") from None
    try:
        return parse_dh_params(data)
    except PEMError as e:
        raise ObjectError(f"Unable to load DH parameters from {path}: "
                          f"{gnutls_reason(e, 'dh')}",
                          hint=f"{e.detail}; create it with 'certtool --generate-dh-params' "
                               "or 'openssl dhparam 2048', or delete it to use the "
                               "built-in RFC 7919 group",
                          path=path, check="dh-params") from None


# -- helpers -----------------------------------------------------------------


def _short(e: Exception) -> str:
    """A one-line reason from a library exception (no data from the file)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _reencode(block: PemBlock) -> bytes:
    """A traditional (possibly Proc-Type encrypted) key block as PEM text again."""
    head = "".join(f"{name}: {value}\n" for name, value in block.headers)
    body = base64.encodebytes(block.der).decode("ascii")
    return (f"-----BEGIN {block.label}-----\n{head}\n{body}"
            f"-----END {block.label}-----\n").encode("ascii")


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``pos``."""
    return _der.element(data, pos)


def _der_int(data: bytes, pos: int) -> tuple[int, int]:
    tag, start, end = _der_item(data, pos)
    if tag != 0x02 or start == end:
        raise ValueError("expected an INTEGER")
    value = int.from_bytes(data[start:end], "big", signed=True)
    if value <= 0:
        raise ValueError("expected a positive INTEGER")
    return value, end


def _pkcs3(der: bytes) -> tuple[int, int]:
    """(prime, generator) from a PKCS#3 ``DHParameter`` SEQUENCE."""
    tag, start, end = _der_item(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("expected one SEQUENCE")
    p, pos = _der_int(der, start)
    g, pos = _der_int(der, pos)
    if pos != end:
        _, pos = _der_int(der, pos)  # optional privateValueLength
    if pos != end:
        raise ValueError("unexpected data after the parameters")
    return p, g
