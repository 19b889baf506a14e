"""Gazette's stream-sum summer as a weir consumer component, in Python.

The same summer as the Rust reference (guest-summer: lib.rs, summer.rs,
sum.rs), built with componentize-py against the `consumer` world of
/work/main/wit. For every chunk that is not an ACK it folds the chunk's data
into its stream's running CRC-64/XZ; when the stream's final (empty or null
`Data`) chunk arrives it publishes the final sum to `examples/stream-sum/sums`
within the transaction.

Guarantees, as the Rust summer's:
- A sum is loaded from the store on the transaction's first touch of its
  stream (key = the 16 raw id bytes, value = the sum JSON) and kept in a
  per-transaction cache; `finalize-txn` writes every cached sum back and
  empties the cache, so sums commit with the shard's checkpoint.
- Documents are byte-identical to the Rust summer's: compact
  `{"ID":[16 numbers],"SeqNo":n,"Value":u64}` in that field order.
- A SeqNo that is not the stored one plus 1, a malformed chunk (JSON
  accepted where serde_json accepts it: duplicate fields, floats or negative
  numbers for integers and non-canonical base64 are refused; unknown fields
  are skipped), a malformed stored sum or one stored under another stream's
  key is an error, never skipped; a store or publish failure is an error
  naming the action and the stream. Errors about a message end with
  ` at <journal>@<begin>`; in a batch they carry the message's index.
- Unexpected Python exceptions become error results, not traps.

Chunks in the layout every chunker writes are recognized by one regex, the
rest by the json module plus checks; both give the same result for every
document. Known differences from serde_json, none reachable from a chunker:
an unknown field nested deeper than Python's recursion limit (about 1000
levels) is refused, where serde_json skips any depth; a document that is a
JSON array is refused (serde_json would read `[ID, SeqNo, Data]`, but the host
only delivers objects). Error texts for malformed input are descriptive, not
serde_json's wording.
"""

import binascii
import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import publisher, store
from wit_world.imports.types import IndexedError

SUMS_JOURNAL = "examples/stream-sum/sums"

# The UUID flag of acknowledgements (Gazette `message.Flag_ACK_TXN`).
ACK_TXN = 2

U64_MAX = (1 << 64) - 1

# CRC-64/XZ (Go's crc64.ECMA table, reflected). Built at import time, which
# componentize-py runs once at build time and snapshots into the component.
_POLY = 0xC96C5795D7870F42


def _make_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


CRC_TABLE = _make_table()


def crc64_update(prev, data):
    """Continues a CRC-64/XZ from a previous *finalized* value, like Go's
    crc64.Update, so a stream's sum does not depend on its chunking."""
    crc = prev ^ U64_MAX
    table = CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ U64_MAX


class Rejected(Exception):
    """The input is wrong (malformed chunk, SeqNo gap or repeat, stored sum of
    another stream): the transaction must fail loudly."""


class HostFailed(Exception):
    """The store or the publisher failed; the text says what and where."""


class _Object(list):
    """A JSON object as its list of (key, value) pairs, so that duplicate
    fields can be refused as serde does."""


def _reject_constant(name):
    # json accepts NaN and Infinity; JSON (and serde_json) does not.
    raise ValueError(f"invalid number {name}")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotUnsigned(str):
    """An integer that no unsigned field can take: negative (serde_json even
    reads `-0` as a float) or longer than 20 digits. Kept as its text, which
    also spares Python's limit on converting huge integers, so an ignored
    field may hold any integer, as with serde_json."""


def _parse_int(text):
    if text[0] == "-" or len(text) > 20:
        return _NotUnsigned(text)
    return int(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_Object, parse_constant=_reject_constant, parse_int=_parse_int
)


def _fields(doc, what, known):
    """The `known` fields of the JSON object `doc` (bytes or memoryview) as a
    dict; other fields are ignored, a repeated known field is an error.

    Like serde_json, strings of ignored values may hold invalid UTF-8 or lone
    surrogate escapes, but field names may not (`surrogateescape` turns
    invalid bytes into lone surrogates, which the field-name check catches).
    """
    try:
        value = _DECODER.decode(str(doc, "utf-8", "surrogateescape"))
    except (ValueError, RecursionError) as err:
        raise Rejected(f"malformed {what}: {err}") from None
    if not isinstance(value, _Object):
        raise Rejected(f"malformed {what}: expected a JSON object")
    fields = {}
    for key, item in value:
        if _LONE_SURROGATE.search(key):
            raise Rejected(
                f"malformed {what}: invalid UTF-8 or lone surrogate in field name {key!r}"
            )
        if key in known:
            if key in fields:
                raise Rejected(f"malformed {what}: duplicate field `{key}`")
            fields[key] = item
    return fields


def _required(fields, key, what):
    if key not in fields:
        raise Rejected(f"malformed {what}: missing field `{key}`")
    return fields[key]


def _show(value):
    """A JSON value as the message shows it."""
    if isinstance(value, _NotUnsigned):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value)
    return "an object" if isinstance(value, _Object) else "an array"


def _stream_id(value, what):
    if type(value) is not list or len(value) != 16:
        raise Rejected(f"malformed {what}: `ID` must be an array of 16 numbers")
    for byte in value:
        if type(byte) is not int or not 0 <= byte <= 255:
            raise Rejected(f"malformed {what}: `ID` must hold integers 0-255, got {_show(byte)}")
    return bytes(value)


def _u64(value, key, what):
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise Rejected(
            f"malformed {what}: `{key}` must be an unsigned 64-bit integer, got {_show(value)}"
        )
    return value


def _decode_data(text):
    """The bytes of `Data` (a str, or ASCII bytes from the canonical-layout
    match): None or empty is the final chunk; anything else must be
    canonical standard base64 (padded, no stray bits), like the base64
    crate's STANDARD engine."""
    if text is None:
        return b""
    if type(text) is str:
        encoded = None
    elif type(text) is bytes:
        encoded = text
    else:
        raise Rejected("malformed chunk: `Data` must be a base64 string or null")
    try:
        data = binascii.a2b_base64(text)
        canonical = binascii.b2a_base64(data, newline=False)
    except ValueError as err:
        raise Rejected(f"malformed chunk data: {err}") from None
    # Re-encoding gives back the input exactly when it was canonical; this
    # also catches characters the lenient decoder skipped. (a2b_base64 has
    # refused non-ASCII text by now.)
    if canonical != (encoded if encoded is not None else text.encode("ascii")):
        raise Rejected("malformed chunk data: not canonical standard base64")
    return data


# The layout every chunker writes (serde's and Go's encoders, with the host's
# UUID first), recognized by one regex (C code) instead of the JSON decoder
# and the field checks, which cost about four times as much. Every document
# it matches is a JSON object that the strict path reads to the same values;
# anything else (other layouts, escapes, SeqNo 0, leading zeros, any other
# character in Data) takes the strict path, so both accept and refuse the
# same documents. An `ID` number above 255 and Data that is not canonical
# base64 are refused below, with the strict path's messages.
_CANONICAL_CHUNK = re.compile(
    rb'\{(?:"UUID":"[0-9A-Za-z-]*",)?'
    rb'"ID":\[((?:0|[1-9][0-9]{0,2})(?:,(?:0|[1-9][0-9]{0,2})){15})\],'
    rb'"SeqNo":([1-9][0-9]{0,19}),'
    rb'"Data":(?:null|"([A-Za-z0-9+/=]*)")\}'
)


def _id_key(stream_id):
    """The text of a stream id as the sum JSON writes it (`1,2,...`): the
    cache key, which the canonical layout hands over as is."""
    return ",".join(map(str, stream_id)).encode()


def _id_from_key(key):
    """The stream id of an `_id_key` text from the canonical layout, whose
    numbers are at most 3 digits."""
    values = [int(text) for text in key.split(b",")]
    for byte in values:
        if byte > 255:
            raise Rejected(f"malformed chunk: `ID` must hold integers 0-255, got {byte}")
    return bytes(values)


class Sum:
    """The running sum of a stream: the CRC-64/XZ of its data so far."""

    __slots__ = ("id", "key", "seq_no", "value")

    def __init__(self, stream_id, seq_no=0, value=0):
        self.id = stream_id
        self.key = _id_key(stream_id)
        self.seq_no = seq_no
        self.value = value

    def to_json(self):
        return b'{"ID":[%b],"SeqNo":%d,"Value":%d}' % (self.key, self.seq_no, self.value)

    @staticmethod
    def parse(doc):
        fields = _fields(doc, "sum", ("ID", "SeqNo", "Value"))
        return Sum(
            _stream_id(_required(fields, "ID", "sum"), "sum"),
            _u64(_required(fields, "SeqNo", "sum"), "SeqNo", "sum"),
            _u64(_required(fields, "Value", "sum"), "Value", "sum"),
        )


def _describe_store(err):
    if isinstance(err, store.StoreError_LimitExceeded):
        return f"store limit exceeded: {err.value}"
    if isinstance(err, store.StoreError_Failed):
        return f"store failed: {err.value}"
    return f"store error: {err!r}"


def _describe_publish(err):
    if isinstance(err, publisher.PublishError_InvalidDocument):
        return f"invalid document: {err.value}"
    if isinstance(err, publisher.PublishError_JournalNotFound):
        return f"journal not found: {err.value}"
    if isinstance(err, publisher.PublishError_LimitExceeded):
        return f"publish limit exceeded: {err.value}"
    return f"publish error: {err!r}"


class Summer:
    """The instance's summer; its cache holds the current transaction's sums
    until `finalize`."""

    def __init__(self):
        # Sums by `_id_key` text.
        self.cache = {}

    def consume(self, doc):
        """Folds one chunk document (not an ACK) into its stream's sum and
        publishes the sum if it was the stream's final chunk."""
        # Checks run in the Rust summer's order: the document (ID, SeqNo),
        # then the data, then the stored sum, then the SeqNo's succession.
        match = _CANONICAL_CHUNK.fullmatch(doc)
        if match is not None:
            key, seq_text, text = match.groups()
            total = self.cache.get(key)
            stream_id = _id_from_key(key) if total is None else total.id
            seq_no = _u64(int(seq_text), "SeqNo", "chunk")
            data = _decode_data(text)
        else:
            fields = _fields(doc, "chunk", ("ID", "SeqNo", "Data"))
            stream_id = _stream_id(_required(fields, "ID", "chunk"), "chunk")
            seq_no = _u64(_required(fields, "SeqNo", "chunk"), "SeqNo", "chunk")
            data = _decode_data(fields.get("Data"))
            key = _id_key(stream_id)
            total = self.cache.get(key)
        if total is None:
            total = self.cache[key] = _load(stream_id)
        expected = total.seq_no + 1
        if seq_no != expected:
            kind = "repeated" if seq_no <= total.seq_no else "skipped ahead"
            raise Rejected(
                f"invalid chunk.SeqNo of stream {stream_id.hex()}: "
                f"expected {expected}, got {seq_no} ({kind})"
            )
        total.seq_no = seq_no
        total.value = crc64_update(total.value, data)
        if not data:
            try:
                publisher.publish(SUMS_JOURNAL, total.to_json())
            except Err as err:
                raise HostFailed(
                    f"publishing the sum of stream {stream_id.hex()}: "
                    f"{_describe_publish(err.value)}"
                ) from None

    def finalize(self):
        """Writes every cached sum back to the store and empties the cache."""
        cache, self.cache = self.cache, {}
        for total in cache.values():
            try:
                store.put(total.id, total.to_json())
            except Err as err:
                raise HostFailed(
                    f"storing the sum of stream {total.id.hex()}: {_describe_store(err.value)}"
                ) from None


def _load(stream_id):
    """The stored sum of a stream, or a fresh one."""
    try:
        stored = store.get(stream_id)
    except Err as err:
        raise HostFailed(
            f"loading the sum of stream {stream_id.hex()}: {_describe_store(err.value)}"
        ) from None
    if stored is None:
        return Sum(stream_id)
    try:
        total = Sum.parse(stored)
    except Rejected as err:
        raise Rejected(f"stored sum of stream {stream_id.hex()}: {err}") from None
    if total.id != stream_id:
        raise Rejected(
            f"invalid chunk.ID: stored sum under key {stream_id.hex()} "
            f"is for stream {total.id.hex()}"
        )
    return total


SUMMER = Summer()


def _consume_located(doc, journal, begin):
    """`SUMMER.consume(doc)`, its error text located at `journal@begin`."""
    try:
        SUMMER.consume(doc)
    except Rejected as err:
        raise _Located(f"{err} at {journal}@{begin}") from None
    except HostFailed as err:
        raise _Located(str(err)) from None
    except Exception as err:  # a bug here must fail the call, not trap
        raise _Located(f"summer failed unexpectedly: {err!r} at {journal}@{begin}") from None


class _Located(Exception):
    """A consume failure with its final error text."""


class WitWorld(wit_world.WitWorld):
    def consume_message(self, envelope):
        if envelope.uuid_flags == ACK_TXN:
            return
        try:
            _consume_located(envelope.doc, envelope.journal, envelope.begin)
        except _Located as err:
            raise Err(str(err)) from None

    def consume_messages(self, batch):
        docs = memoryview(batch.docs)
        journal = batch.journal
        begins = batch.begins
        if not len(batch.doc_ends) == len(batch.uuid_flags) == len(begins):
            raise Err(IndexedError(
                0, f"the host sent a batch whose columns differ in length at {journal}"
            ))
        start = 0
        for index, (end, flags) in enumerate(zip(batch.doc_ends, batch.uuid_flags)):
            if end < start or end > len(docs):
                raise Err(IndexedError(
                    index,
                    f"the host sent a document outside the batch at {journal}@{begins[index]}",
                ))
            doc, start = docs[start:end], end
            if flags == ACK_TXN:
                continue
            try:
                _consume_located(doc, journal, begins[index])
            except _Located as err:
                raise Err(IndexedError(index, str(err))) from None

    def finalize_txn(self):
        try:
            SUMMER.finalize()
        except HostFailed as err:
            raise Err(str(err)) from None
        except Exception as err:  # a bug here must fail the call, not trap
            raise Err(f"summer failed unexpectedly: {err!r}") from None
