"""The error-code table in inferno/errors.py keeps to the seed's statuses; docs/errors.md says the same."""

from __future__ import annotations

from pathlib import Path

from inferno.errors import ERROR_KINDS, NUMERIC_DETAILS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
SEED_STATUSES = {200, 201, 400, 401, 403, 404, 429, 500, 503}
# Beyond the seed's table, each for a reason docs/errors.md gives: a wrong method, an oversized request.
EXTRA_STATUSES = {405, 413}


def _documented_rows() -> dict[str, tuple[int, str, str]]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[1].isdigit():
            code, status, grpc_status, error_type = (cells[0].strip("`"), int(cells[1]), *cells[2:4])
            rows[code] = (status, grpc_status.strip("`"), error_type.strip("`"))
    return rows


def test_every_error_status_is_the_seeds_or_a_documented_exception() -> None:
    statuses = {kind.http_status for kind in ERROR_KINDS.values()}
    assert statuses <= SEED_STATUSES | EXTRA_STATUSES
    assert ERROR_KINDS["model_not_loaded"].http_status == 400
    assert ERROR_KINDS["insufficient_memory"].http_status == 503


def test_the_docs_table_lists_every_code_as_the_code_does() -> None:
    expected = {
        code: (kind.http_status, kind.grpc_status.name, kind.error_type) for code, kind in ERROR_KINDS.items()
    }
    assert _documented_rows() == expected


def test_param_is_never_a_numeric_detail() -> None:
    assert not {"param", "model_id", "key_id", "suggestion"} & NUMERIC_DETAILS
