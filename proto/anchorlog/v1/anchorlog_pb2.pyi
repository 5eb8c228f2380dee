from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_VENDOR: _ClassVar[Role]
    ROLE_READER: _ClassVar[Role]
    ROLE_AUDITOR: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_ADMIN: Role
ROLE_VENDOR: Role
ROLE_READER: Role
ROLE_AUDITOR: Role

class Checkpoint(_message.Message):
    __slots__ = ("note", "size", "root_hash")
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    note: bytes
    size: int
    root_hash: bytes
    def __init__(self, note: _Optional[bytes] = ..., size: _Optional[int] = ..., root_hash: _Optional[bytes] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("index", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    data: bytes
    def __init__(self, index: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("leaf_index", "tree_size", "hashes")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("first_size", "second_size", "hashes")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ProvedEntry(_message.Message):
    __slots__ = ("entry", "inclusion")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    inclusion: InclusionProof
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ..., inclusion: _Optional[_Union[InclusionProof, _Mapping]] = ...) -> None: ...

class BatchPath(_message.Message):
    __slots__ = ("leaf_index", "batch_size", "hashes")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    batch_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, leaf_index: _Optional[int] = ..., batch_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubmitItem(_message.Message):
    __slots__ = ("envelope", "batch_digests")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    batch_digests: bytes
    def __init__(self, envelope: _Optional[bytes] = ..., batch_digests: _Optional[bytes] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("items", "trusted_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SubmitItem]
    trusted_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[SubmitItem, _Mapping]]] = ..., trusted_size: _Optional[int] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("entry", "checkpoint", "duplicate")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    entry: ProvedEntry
    checkpoint: Checkpoint
    duplicate: bool
    def __init__(self, entry: _Optional[_Union[ProvedEntry, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ItemResult(_message.Message):
    __slots__ = ("position", "receipt", "error", "consistency")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    position: int
    receipt: Receipt
    error: _status_pb2.Status
    consistency: ConsistencyProof
    def __init__(self, position: _Optional[int] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., consistency: _Optional[_Union[ConsistencyProof, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ...) -> None: ...

class GetProvenanceRequest(_message.Message):
    __slots__ = ("digest", "trusted_size")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    trusted_size: int
    def __init__(self, digest: _Optional[bytes] = ..., trusted_size: _Optional[int] = ...) -> None: ...

class ProvenanceQuery(_message.Message):
    __slots__ = ("digests", "trusted_size", "omit_status_hints", "batched_columns")
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    OMIT_STATUS_HINTS_FIELD_NUMBER: _ClassVar[int]
    BATCHED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    trusted_size: int
    omit_status_hints: bool
    batched_columns: bool
    def __init__(self, digests: _Optional[_Iterable[bytes]] = ..., trusted_size: _Optional[int] = ..., omit_status_hints: _Optional[bool] = ..., batched_columns: _Optional[bool] = ...) -> None: ...

class DigestHit(_message.Message):
    __slots__ = ("entry_index", "batch_path")
    ENTRY_INDEX_FIELD_NUMBER: _ClassVar[int]
    BATCH_PATH_FIELD_NUMBER: _ClassVar[int]
    entry_index: int
    batch_path: BatchPath
    def __init__(self, entry_index: _Optional[int] = ..., batch_path: _Optional[_Union[BatchPath, _Mapping]] = ...) -> None: ...

class DigestProvenance(_message.Message):
    __slots__ = ("digest", "hits", "revocation_indices", "status_hint")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_INDICES_FIELD_NUMBER: _ClassVar[int]
    STATUS_HINT_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    hits: _containers.RepeatedCompositeFieldContainer[DigestHit]
    revocation_indices: _containers.RepeatedScalarFieldContainer[int]
    status_hint: str
    def __init__(self, digest: _Optional[bytes] = ..., hits: _Optional[_Iterable[_Union[DigestHit, _Mapping]]] = ..., revocation_indices: _Optional[_Iterable[int]] = ..., status_hint: _Optional[str] = ...) -> None: ...

class ProvenanceResponse(_message.Message):
    __slots__ = ("checkpoint", "consistency", "digests", "entries", "batched")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BATCHED_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    consistency: ConsistencyProof
    digests: _containers.RepeatedCompositeFieldContainer[DigestProvenance]
    entries: _containers.RepeatedCompositeFieldContainer[ProvedEntry]
    batched: BatchedSamples
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., consistency: _Optional[_Union[ConsistencyProof, _Mapping]] = ..., digests: _Optional[_Iterable[_Union[DigestProvenance, _Mapping]]] = ..., entries: _Optional[_Iterable[_Union[ProvedEntry, _Mapping]]] = ..., batched: _Optional[_Union[BatchedSamples, _Mapping]] = ...) -> None: ...

class BatchedSamples(_message.Message):
    __slots__ = ("positions", "entry_indices", "leaf_indices", "path_hashes", "status_hints")
    class StatusHintsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_INDICES_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDICES_FIELD_NUMBER: _ClassVar[int]
    PATH_HASHES_FIELD_NUMBER: _ClassVar[int]
    STATUS_HINTS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    entry_indices: _containers.RepeatedScalarFieldContainer[int]
    leaf_indices: _containers.RepeatedScalarFieldContainer[int]
    path_hashes: bytes
    status_hints: _containers.ScalarMap[int, str]
    def __init__(self, positions: _Optional[_Iterable[int]] = ..., entry_indices: _Optional[_Iterable[int]] = ..., leaf_indices: _Optional[_Iterable[int]] = ..., path_hashes: _Optional[bytes] = ..., status_hints: _Optional[_Mapping[int, str]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("trusted_size",)
    TRUSTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    trusted_size: int
    def __init__(self, trusted_size: _Optional[int] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "consistency", "verifier_key")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    consistency: ConsistencyProof
    verifier_key: str
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., consistency: _Optional[_Union[ConsistencyProof, _Mapping]] = ..., verifier_key: _Optional[str] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("first_size", "second_size")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("entry", "checkpoint")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    entry: ProvedEntry
    checkpoint: Checkpoint
    def __init__(self, entry: _Optional[_Union[ProvedEntry, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class GetBatchDigestsRequest(_message.Message):
    __slots__ = ("entry_index",)
    ENTRY_INDEX_FIELD_NUMBER: _ClassVar[int]
    entry_index: int
    def __init__(self, entry_index: _Optional[int] = ...) -> None: ...

class GetBatchDigestsResponse(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: bytes
    def __init__(self, digests: _Optional[bytes] = ...) -> None: ...

class GetKeyHistoryRequest(_message.Message):
    __slots__ = ("vendor_id",)
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    def __init__(self, vendor_id: _Optional[str] = ...) -> None: ...

class GetKeyHistoryResponse(_message.Message):
    __slots__ = ("checkpoint", "entries")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    entries: _containers.RepeatedCompositeFieldContainer[ProvedEntry]
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[ProvedEntry, _Mapping]]] = ...) -> None: ...

class KeyEventResponse(_message.Message):
    __slots__ = ("receipt", "key_id")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    receipt: Receipt
    key_id: str
    def __init__(self, receipt: _Optional[_Union[Receipt, _Mapping]] = ..., key_id: _Optional[str] = ...) -> None: ...

class CreateVendorRequest(_message.Message):
    __slots__ = ("vendor_id", "display_name")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    display_name: str
    def __init__(self, vendor_id: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class RegisterKeyRequest(_message.Message):
    __slots__ = ("vendor_id", "public_key", "not_before", "not_after")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    public_key: bytes
    not_before: int
    not_after: int
    def __init__(self, vendor_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., not_before: _Optional[int] = ..., not_after: _Optional[int] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("vendor_id", "old_key_id", "new_public_key", "not_after")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    old_key_id: str
    new_public_key: bytes
    not_after: int
    def __init__(self, vendor_id: _Optional[str] = ..., old_key_id: _Optional[str] = ..., new_public_key: _Optional[bytes] = ..., not_after: _Optional[int] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("vendor_id", "key_id", "compromised", "reason")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COMPROMISED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    key_id: str
    compromised: bool
    reason: str
    def __init__(self, vendor_id: _Optional[str] = ..., key_id: _Optional[str] = ..., compromised: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("principal", "role")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    principal: str
    role: Role
    def __init__(self, principal: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "token_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id", "token", "principal")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    token: str
    principal: str
    def __init__(self, token_id: _Optional[str] = ..., token: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token_ids",)
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("principal", "role")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    principal: str
    role: Role
    def __init__(self, principal: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...
