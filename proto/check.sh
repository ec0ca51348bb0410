#!/usr/bin/env bash
# Proto checks for CI and before committing: buf lint, buf format, and buf breaking against a baseline commit.
#
# buf: $BUF, else .venv/bin/buf (the buf-bin wheel in the test extra), else PATH.
# Baseline for buf breaking, first that applies:
#   $BUF_AGAINST            any git revision; "none" skips the check
#   a branch off main       the merge base with main (or origin/main)
#   on main                 HEAD~1, so CI on a fresh clone checks what the last commit changed,
#                           and a local run checks the last commit plus uncommitted edits
# Skipped when the baseline has no proto/, or when HEAD's message has a "Proto-Breaking: <why>" line
# (a deliberate break: say why there).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

find_buf() {
    if [[ -n "${BUF:-}" ]]; then
        echo "$BUF"
    elif [[ -x .venv/bin/buf ]]; then
        echo .venv/bin/buf
    elif command -v buf >/dev/null; then
        command -v buf
    else
        echo "proto/check.sh: buf not found; install it with: .venv/bin/pip install '.[test]'" >&2
        exit 1
    fi
}

commit_of() {
    git rev-parse --verify --quiet "$1^{commit}" 2>/dev/null
}

baseline_commit() {
    if [[ -n "${BUF_AGAINST:-}" ]]; then
        if [[ "$BUF_AGAINST" != none ]]; then
            commit_of "$BUF_AGAINST" || { echo "proto/check.sh: BUF_AGAINST=$BUF_AGAINST is no commit" >&2; exit 1; }
        fi
        return 0
    fi
    local head main
    head="$(commit_of HEAD)" || return 0
    main="$(commit_of main || commit_of origin/main || true)"
    if [[ -n "$main" && "$main" != "$head" ]]; then
        git merge-base "$head" "$main"
    else
        commit_of HEAD~1 || true
    fi
}

# Writes the proto workspace of commit $1 into directory $2. A commit from before buf.yaml existed is paired
# with today's buf.yaml and vendored imports, so its protos still build.
export_workspace() {
    local commit="$1" dest="$2" path
    git archive "$commit" -- proto | tar -x -C "$dest"
    for path in buf.yaml third_party; do
        if git cat-file -e "$commit:$path" 2>/dev/null; then
            git archive "$commit" -- "$path" | tar -x -C "$dest"
        else
            cp -R "$path" "$dest/"
        fi
    done
}

buf="$(find_buf)"
echo "+ buf lint"
"$buf" lint
echo "+ buf format --diff --exit-code"
"$buf" format --diff --exit-code

baseline="$(baseline_commit)"
if [[ "${BUF_AGAINST:-}" == none ]]; then
    echo "buf breaking: skipped (BUF_AGAINST=none)"
elif [[ -z "$baseline" ]]; then
    echo "buf breaking: skipped (no baseline commit)"
elif ! git cat-file -e "$baseline:proto" 2>/dev/null; then
    echo "buf breaking: skipped (baseline ${baseline:0:12} has no proto/)"
elif reason="$(git log -1 --format=%B HEAD | grep '^Proto-Breaking:')"; then
    echo "buf breaking: skipped (HEAD says $reason)"
else
    workspace="$(mktemp -d)"
    trap 'rm -rf "$workspace"' EXIT
    export_workspace "$baseline" "$workspace"
    echo "+ buf breaking --against ${baseline:0:12}"
    "$buf" breaking --against "$workspace"
fi
