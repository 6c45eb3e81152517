#!/usr/bin/env bash
# Validates the deployment manifests offline:
#   DIR/kubernetes/*.yaml  with kubernetes-validate (PyPI, pinned and hashed
#                          in deploy/requirements.txt) against the bundled
#                          schemas of Kubernetes $KUBERNETES_VERSION, strict
#                          (unknown fields are errors);
#   DIR/knative/*.yaml     with deploy/validate/validate-knative.mjs: the
#                          @kubernetes-models/knative schema and Knative's
#                          admission rules (npm, pinned in
#                          deploy/validate/package-lock.json).
# The tools are installed on first use under target/deploy-validate (a
# Python venv and an npm tree; this needs PyPI and the npm registry once).
#
#   scripts/validate-deploy.sh [DIR]      (default: deploy)
set -euo pipefail

die() {
  printf 'validate-deploy.sh: %s\n' "$*" >&2
  exit 2
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m -- "${1:-$repo_root/deploy}")
(($# <= 1)) || die "usage: scripts/validate-deploy.sh [DIR]"
[[ -d $dir ]] || die "$dir is not a directory"

# The oldest Kubernetes release still supported upstream when this was
# written; kubernetes-validate 1.37.0 carries schemas for 1.25 to 1.37.
kubernetes_version=${KUBERNETES_VERSION:-1.35.0}
tools=${WAXOSUIT_VALIDATE_TOOLS:-$repo_root/target/deploy-validate}

command -v python3 >/dev/null 2>&1 || die "\`python3\` is not installed (Debian: apt-get install python3 python3-venv)"
command -v node >/dev/null 2>&1 || die "\`node\` is not installed (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "\`npm\` is not installed (Debian: apt-get install npm)"
# Debian's python3 leaves venv's pip bootstrap (ensurepip) to python3-venv;
# without it `python3 -m venv` fails half-way. Checked before anything is
# installed.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
  die "python3 cannot create a venv: ensurepip is missing (Debian: apt-get install python3-venv)"

mkdir -p "$tools"
# Concurrent runs (parallel tests) share the tools: one installs at a time.
exec 9>"$tools/.lock"
flock 9

# Reinstalled when the pins change: the stamp is a copy of what was installed.
requirements=$repo_root/deploy/requirements.txt
venv=$tools/venv
if ! cmp -s "$requirements" "$venv/installed-requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # Every file is checked against the hashes in the requirements; wheels
  # only, so no package's build code runs.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: -r "$requirements" >&2 ||
    die "pip install --require-hashes -r $requirements failed (is PyPI reachable? a wheel for this Python and platform hashed there?)"
  cp "$requirements" "$venv/installed-requirements.txt"
fi

node_dir=$tools/node
if ! cmp -s "$repo_root/deploy/validate/package-lock.json" "$node_dir/package-lock.json" 2>/dev/null; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$repo_root/deploy/validate/package.json" "$repo_root/deploy/validate/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci in $node_dir failed (is the npm registry reachable?)"
fi
cp "$repo_root/deploy/validate/validate-knative.mjs" "$node_dir/"
flock -u 9

shopt -s nullglob
kubernetes=("$dir"/kubernetes/*.yaml)
knative=("$dir"/knative/*.yaml)
((${#kubernetes[@]} + ${#knative[@]} > 0)) || die "no manifests in $dir/kubernetes or $dir/knative"

status=0
if ((${#kubernetes[@]})); then
  # It only warns (exit 0) about a kind it has no schema for: a custom
  # resource placed here would pass unchecked, so that fails too.
  out=$("$venv/bin/kubernetes-validate" --strict --kubernetes-version "$kubernetes_version" "${kubernetes[@]}" 2>&1) || status=1
  printf '%s\n' "$out"
  if grep -q "Couldn't find schema" <<<"$out"; then
    printf 'ERROR kubernetes-validate has no schema for a kind above; custom resources belong in %s/knative or another checked directory\n' "$dir"
    status=1
  fi
fi
if ((${#knative[@]})); then
  node "$node_dir/validate-knative.mjs" "${knative[@]}" || status=1
fi
exit $status
