"""RFC 6962 / RFC 9162 §2 Merkle tree math as small pure functions.

* ``hashing``: leaf and node hashes, the empty root.
* ``ranges``: perfect-subtree node IDs, compact ranges, folding, appending,
  proof plans.
* ``inclusion`` / ``consistency``: which ranges a proof is made of, and the
  RFC 9162 verification algorithms.

Proofs are generated in two steps so that storage can fetch every node it needs
in one query: ``inclusion_plan`` / ``consistency_plan`` name the nodes
(``ProofPlan.node_ids``), then ``ProofPlan.assemble`` folds their hashes.
"""

from __future__ import annotations

from anchorlog.ledger.merkle.consistency import (
    consistency_plan,
    consistency_proof_length,
    verify_consistency,
)
from anchorlog.ledger.merkle.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash
from anchorlog.ledger.merkle.inclusion import (
    inclusion_nodes,
    inclusion_plan,
    inclusion_proof_length,
    inclusion_proofs_of_range,
    root_from_inclusion,
    verify_inclusion,
)
from anchorlog.ledger.merkle.ranges import (
    Appended,
    NodeID,
    ProofPlan,
    append_leaves,
    fold_range,
    frontier_root,
    range_nodes,
    root_of,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Appended",
    "NodeID",
    "ProofPlan",
    "append_leaves",
    "consistency_plan",
    "consistency_proof_length",
    "fold_range",
    "frontier_root",
    "inclusion_nodes",
    "inclusion_plan",
    "inclusion_proof_length",
    "inclusion_proofs_of_range",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from_inclusion",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]
