"""The dataset gate: is enough of a training set grounded in human data?

Library entry points::

    from anchorlog.client.gate import Policy, check_dataset, read_manifest
    with LedgerClient(...) as client:
        policy = Policy(min_fraction=0.3, slice_column="lang")
        result = check_dataset(client, read_manifest(Path("train.jsonl"), slice_column="lang"), policy)
    result.passed, result.failing_slices

Modules, one idea each: ``manifests`` (reading and hashing datasets), ``policy``
(the rule and its TOML file), ``check`` (streaming verified lookups and the
tally), ``report`` (JSON, Markdown, HTML chart), ``bundle`` (offline evidence),
``slsa`` (Verification Summary), ``label`` (filter or label rows by status),
``cli`` (``anchorlog check``). Names are loaded on first use so that the command
line starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "gate_bundle_json": "bundle",
    "grounded_bundle": "bundle",
    "verify_gate_bundle": "bundle",
    "GateResult": "check",
    "GateTally": "check",
    "SliceResult": "check",
    "Verdict": "check",
    "check_dataset": "check",
    "evaluate": "check",
    "policy_status": "check",
    "filter_hf": "label",
    "filter_rows": "label",
    "label_hf": "label",
    "label_rows": "label",
    "FieldSpec": "manifests",
    "ManifestFormat": "manifests",
    "ManifestSample": "manifests",
    "read_manifest": "manifests",
    "samples_from_directory": "manifests",
    "samples_from_hf": "manifests",
    "samples_from_rows": "manifests",
    "Policy": "policy",
    "load_policy": "policy",
    "parse_duration": "policy",
    "to_html": "report",
    "to_markdown": "report",
    "write_reports": "report",
    "verification_summary": "slsa",
}
__all__ = [
    "FieldSpec",
    "GateResult",
    "GateTally",
    "ManifestFormat",
    "ManifestSample",
    "Policy",
    "SliceResult",
    "Verdict",
    "check_dataset",
    "evaluate",
    "filter_hf",
    "filter_rows",
    "gate_bundle_json",
    "grounded_bundle",
    "label_hf",
    "label_rows",
    "load_policy",
    "parse_duration",
    "policy_status",
    "read_manifest",
    "samples_from_directory",
    "samples_from_hf",
    "samples_from_rows",
    "to_html",
    "to_markdown",
    "verification_summary",
    "verify_gate_bundle",
    "write_reports",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
